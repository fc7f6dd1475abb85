"""The demo's steps: (re)train the model, run the four integrators, evaluate them, write the report."""
from __future__ import annotations

from pathlib import Path

import yaml

from .. import strict_yaml
from ..model_file import read_metadata
from .runs import RunResult, fix_actionmd_interactions, lammps_input, run_ase_action, run_lammps

ROOT = Path(__file__).resolve().parents[3]


def train_model(system: str, workdir: Path) -> Path:
    """Regenerate the reference data and retrain, as models/<system>/train.yaml says; the new model's path."""
    from ..data import load_config
    from ..data.generate import generate
    from ..training.config import train_from_config
    config = ROOT / "models" / system / "train.yaml"
    if not config.exists():
        raise SystemExit(f"no training config {config}: --train needs a shipped system with models/<system>/train.yaml")
    workdir.mkdir(parents=True, exist_ok=True)
    settings = strict_yaml.safe_load(config.read_text())
    data = workdir / f"{system}.h5"
    generate(load_config(system), data)
    settings.update(data=[data.name], output="run")
    (workdir / "train.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return train_from_config(workdir / "train.yaml")


def reference_potential(system: str) -> list[str]:
    """The system's LAMMPS interaction lines, after the potentials_dir variable they may use (as the
    generator and the evaluation define it)."""
    from ..data import load_config
    from ..data.lammps_run import potentials_dir
    return [f"variable potentials_dir string {potentials_dir()}", *load_config(system)["potential"]]


class DeferredRun:
    """A run not started yet, with its label, so that a failure can be reported under its name."""

    def __init__(self, label, function, *args, **kwargs):
        self.label, self.function, self.args, self.kwargs = label, function, args, kwargs

    def __call__(self) -> RunResult:
        return self.function(self.label, *self.args, **self.kwargs)


def run_all(runs: list[DeferredRun]) -> tuple[list[RunResult], dict[str, str]]:
    """Run each in turn; a run that fails (velocity Verlet or a solve blowing up at a long stride) is a
    result, recorded by label, not the end of the comparison. The first run is the truth: it must succeed."""
    results, failures = [runs[0]()], {}
    for run in runs[1:]:
        try:
            results.append(run())
        except Exception as err:
            failures[run.label] = f"{type(err).__name__}: {_failure_line(str(err))[:160]}"
    return results, failures


def _failure_line(message: str) -> str:
    """The line that says why: LAMMPS's own "ERROR: ..." (e.g. "Lost atoms") rather than the link to its
    documentation that follows it, else the message's last line."""
    lines = message.strip().splitlines() or [""]
    return next((line.strip() for line in reversed(lines) if line.lstrip().startswith("ERROR")), lines[-1])


def evaluate_runs(runs: list[RunResult], failures: dict[str, str], system: str, units: str, output: Path,
                  versus: RunResult | None = None):
    """Evaluate every run with frames against the first (the truth); write the report with a speed table.
    A run whose frames cannot be evaluated (non-finite energies after a blow-up) joins ``failures``.
    Returns (results, report path, speed table)."""
    from ..data import load_config
    from ..evaluation import EvaluationError, evaluate, read_trajectory, write_report
    elements, truth = load_config(system)["elements"], runs[0].label
    trajectories = {r.label: read_trajectory(r.frames, interval_fs=r.frame_interval_fs, types=elements, units=units)
                    for r in runs if r.frames is not None}
    while True:
        try:
            results = evaluate(trajectories, reference=truth, system=system)
            break
        except EvaluationError as err:
            bad = next((label for label, t in trajectories.items() if label != truth and str(t.source) in str(err)),
                       None)
            if bad is None:
                raise
            failures[bad] = f"evaluation: {str(err).splitlines()[0][:160]}"
            del trajectories[bad]
    paths = write_report(results, output)
    speed = speed_table([r for r in runs if r.label in trajectories or r.frames is None], failures, versus)
    paths[0].write_text(paths[0].read_text() + "\n## Speed\n\n" + speed + "\n")
    return results, paths[0], speed


def _runs(model: Path, data_file: Path, system: str, time_ps: float, reference_dt: float, ranks: int,
          workdir: Path, types: list[str]) -> list[DeferredRun]:
    """The demo's runs, in order: the truth, velocity Verlet at the stride, the predictor alone, fix actionmd,
    ASE. LAMMPS runs (the truth included: the fair baseline uses the whole CPU) on ``ranks`` MPI ranks."""
    import warnings

    from ase.data import atomic_numbers
    from ase.io import read
    metadata = read_metadata(model)
    stride = metadata.stride
    ratio = stride / reference_dt
    if abs(ratio - round(ratio)) > 1e-9:
        raise SystemExit(f"the model's stride {stride:g} fs is not a multiple of the reference dt {reference_dt:g} fs")
    long_steps, every = int(round(time_ps * 1000 / stride)), int(round(ratio))
    reference = reference_potential(system)
    atoms = read(data_file, format="lammps-data", atom_style="atomic", units="metal",
                 Z_of_type={k + 1: atomic_numbers[e] for k, e in enumerate(types)})

    def predictor_alone(label, folder):
        with warnings.catch_warnings():  # the warning that the predictor alone is not symplectic: here on purpose
            warnings.simplefilter("ignore")
            return run_ase_action(label, folder, atoms.copy(), model, long_steps, mode="predictor")

    return [
        DeferredRun(f"LAMMPS velocity Verlet {reference_dt:g} fs", run_lammps, workdir / "vv-reference",
             lammps_input(data_file, reference_dt, long_steps * every, every, ["fix int all nve"], reference),
             long_steps * every, reference_dt, every, ranks=ranks),
        DeferredRun(f"LAMMPS velocity Verlet {stride:g} fs", run_lammps, workdir / "vv-stride",
             lammps_input(data_file, stride, long_steps, 1, ["fix int all nve"], reference),
             long_steps, stride, 1, ranks=ranks),
        DeferredRun(f"ASE predictor alone {stride:g} fs", predictor_alone, workdir / "predictor"),
        DeferredRun(f"LAMMPS fix actionmd {stride:g} fs", run_lammps, workdir / "fix-actionmd",
             lammps_input(data_file, stride, long_steps, 1,
                          [f"fix int all actionmd {model.resolve()} types {' '.join(types)}"],
                          fix_actionmd_interactions(metadata),
                          thermo_extra=("f_int[1]", "f_int[3]")),
             long_steps, stride, 1, ranks=ranks),
        DeferredRun(f"ASE ActionVerlet {stride:g} fs", run_ase_action, workdir / "ase-action", atoms.copy(), model,
                    long_steps),
    ]


def run_demo(model: Path, data_file: Path, system: str, time_ps: float, reference_dt: float, ranks: int,
             output: Path) -> Path:
    """Run, evaluate against the velocity-Verlet truth, print the tables; return the report's path."""
    from ..data import load_config
    from ..evaluation import verdict_table
    types = load_config(system)["elements"]
    metadata = read_metadata(model)
    print(f"actionmd demo: {system}, model {model} ({metadata.stride:g} fs stride, "
          f"{metadata.stride / reference_dt:g}x the {reference_dt:g} fs reference dt), {time_ps:g} ps per run")
    plan = _runs(model, data_file, system, time_ps, reference_dt, ranks, output / "runs", types)
    runs, failures = run_all(plan)
    results, report, speed = evaluate_runs(runs, failures, system, "metal", output)
    maps = [r for r in runs if r.label in {run.label for run in plan[-2:]}]  # fix actionmd and ASE ActionVerlet
    print("\n" + headline(runs[0], maps, failures) + "\n\n" + verdict_table(results) + "\n\n" + speed + "\n\n"
          + noise_note(results))
    return report


def headline(truth_run: RunResult, maps: list[RunResult], failures: dict[str, str]) -> str:
    """The first line of the result: how much sooner the learned map reaches the same simulated time than the
    truth does, in each engine that ran it."""
    truth = truth_run.wall_seconds / truth_run.simulated_ps
    if not maps:
        return f"speed-up over {truth_run.label}: none (the action-map runs failed: {'; '.join(failures.values())})"
    return (f"speed-up over {truth_run.label} ({truth_run.ranks} rank(s)): "
            + ", ".join(f"{truth / (r.wall_seconds / r.simulated_ps):.1f}x ({r.label}, {r.ranks} rank(s))"
                        for r in maps))


def noise_note(results: dict) -> str:
    """How much of the table is statistics: a small box over a short run cannot resolve 2 % or 10 %."""
    reference = results["runs"][results["reference"]]
    spread, error = reference["temperature"]["spread"], reference["temperature"]["spread_stderr"]
    floor = max(reference.get("rdf_l1_noise", {}).values(), default=float("nan"))
    return (f"Read the verdicts against the noise: the reference itself has a temperature spread of "
            f"{100 * spread:.1f} ± {100 * error:.1f} % between species, and its RDF differs by L1 {floor:.3f} between "
            "its own two halves; diffusion from one short run of a small box carries errors of the same order. "
            "Longer runs (--time-ps) shrink all three.")


def speed_table(runs: list[RunResult], failures: dict[str, str], versus: RunResult | None = None) -> str:
    """Wall time per simulated ps, its ratio to the truth (the first run) and optionally to ``versus`` (e.g.
    the same-backbone ML potential), iterations and model evaluations per step."""
    truth = runs[0].wall_seconds / runs[0].simulated_ps
    extra = versus.wall_seconds / versus.simulated_ps if versus else None
    header = ["run", "ranks", "wall s / simulated ps", "speed-up vs truth"] + (
        ["speed-up vs same-backbone ML potential"] if versus else []) + ["iterations / step", "model evaluations / step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    fmt = lambda x: "-" if x is None else f"{x:.2f}"
    for r in runs:
        per_ps = r.wall_seconds / r.simulated_ps
        cells = [r.label, str(r.ranks), f"{per_ps:.3g}", f"{truth / per_ps:.2f}"] + (
            [f"{extra / per_ps:.2f}"] if versus else []) + [fmt(r.mean_iterations), fmt(r.mean_evaluations)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["| " + " | ".join([label, "", f"failed: {why}"] + [""] * (len(header) - 3)) + " |"
              for label, why in failures.items()]
    return "\n".join(lines)
