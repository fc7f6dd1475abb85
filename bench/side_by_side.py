"""Side by side on one built-in system, from one thermalised state of a reference dataset:

    python bench/side_by_side.py SYSTEM MODEL DATA.h5 [--segment -1] [--time-ps 100] [--out DIR]

  1. LAMMPS velocity Verlet at the dataset's reference dt (the truth) and at the model's stride;
  2. the model's direct predictor alone (ASE, mode="predictor");
  3. the action map (ASE ActionVerlet) with the predictor's guess and with a free-flight guess;
  4. optionally the action map in LAMMPS (`fix actionmd`, --ranks N; bonded styles become their zero styles);
  5. for speed only: velocity Verlet at the reference dt with the action network's own potential term, an
     ML potential of the same backbone and size (one gradient per reference step);
  6. for molecular systems, what a LAMMPS user would pick instead: r-RESPA (run_style respa) with bonds and
     angles at the reference dt and the rest at an outer step (--respa OUTER_FS ...).
The reference runs on --reference-ranks MPI ranks (2: the expensive potential on the whole 2-core CPU).
All runs are evaluated alike against (1) with actionmd.evaluation (energy under the reference potential,
temperatures per species, RDF, diffusion), with wall time per simulated ps and solver iterations.
Writes DIR/report.md, DIR/results.json and DIR/summary.json (the table of BENCHMARKS.md).
"""
import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps: docs/lammps.md)
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from actionmd.data import load_dataset
from actionmd.data.config import element_mass
from actionmd.data.lammps_run import torch_threads_kept
from actionmd.demo.pipeline import DeferredRun, evaluate_runs, reference_potential, run_all
from actionmd.demo.runs import (RunResult, fix_actionmd_interactions, lammps_input, run_ase_action, run_ase_reference,
                                run_lammps)
from actionmd.evaluation import text_table, to_jsonable
from actionmd.evaluation.energy import CHARGED_STYLES, MOLECULAR_STYLES, _data_file, _type_charges, _types
from actionmd.evaluation.molecules import water_molecules
from actionmd.evaluation.trajectory import Trajectory
from actionmd.model_file import read_metadata
from actionmd.units import momenta_model_to_ase

VELOCITY_PER_A_FS = {"metal": 1000.0, "real": 1.0}  # LAMMPS velocity units per Å/fs


def start_state(data_path: Path, segment: int):
    """The last frame of one segment of the dataset: thermalised, and (held-out data) unseen in training."""
    dataset = load_dataset(data_path)
    count = len(dataset.segments)
    if not -count <= segment < count:
        raise SystemExit(f"--segment {segment}: {data_path} holds {count} segment(s) (0..{count - 1}, or negative from "
                         "the end); generate more with `actionmd generate ... --set protocol.segments=N`")
    s = dataset.segments[segment]
    return s, dict(numbers=s.atomic_numbers, masses=s.masses, positions=s.positions[-1], momenta=s.momenta[-1],
                   cell=s.cell, dt_fs=dataset.dt_fs)  # the reference velocity-Verlet step, not the frame interval


def repeated(state: dict, n: int, seed: int = 0) -> dict:
    """The state repeated n x n x n, for timing runs at a production size (a small cell's cost per atom is
    mostly per-call overhead). Exact copies would move in lockstep, so the momenta are drawn afresh from
    Maxwell-Boltzmann at the state's own kinetic temperature, with zero total momentum."""
    if n == 1:
        return state
    cell = np.asarray(state["cell"])
    shifts = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)]) @ cell
    positions = (state["positions"][None] + shifts[:, None]).reshape(-1, 3)
    masses = np.tile(state["masses"], len(shifts))
    kT = float(np.mean(state["momenta"] ** 2 / state["masses"][:, None]))    # p^2/m per degree of freedom
    momenta = np.random.default_rng(seed).normal(size=positions.shape) * np.sqrt(masses * kT)[:, None]
    momenta -= masses[:, None] * momenta.sum(axis=0) / masses.sum()
    return dict(state, numbers=np.tile(state["numbers"], len(shifts)), masses=masses, positions=positions,
                momenta=momenta, cell=cell * n)


def write_data_file(path: Path, cfg: dict, state: dict) -> None:
    """A LAMMPS data file of the state (with water's bonds and angles), velocities included."""
    velocities = state["momenta"] / state["masses"][:, None]
    traj = Trajectory(numbers=state["numbers"], masses=state["masses"], positions=state["positions"][None],
                      cells=np.asarray(state["cell"])[None], interval_fs=1.0, velocities=velocities[None])
    from ase.calculators.lammps import Prism
    prism = Prism(np.asarray(state["cell"]))
    types = _types(traj, cfg)
    with tempfile.TemporaryDirectory() as work:
        charges = _type_charges(cfg, work) if cfg["atom_style"] in CHARGED_STYLES else None
    molecules = (water_molecules(traj.numbers, traj.positions[0], traj.cells[0])
                 if cfg["atom_style"] in MOLECULAR_STYLES else None)
    text = _data_file(traj, cfg, types, charges, molecules, prism, prism.is_skewed())
    v = prism.vector_to_lammps(velocities) * VELOCITY_PER_A_FS[cfg["units"]]
    rows = "\n".join(f"{k + 1} {x:.17g} {y:.17g} {z:.17g}" for k, (x, y, z) in enumerate(v))
    path.write_text(text + "\nVelocities\n\n" + rows + "\n")


class Start:
    """What every run of a comparison starts from: the system's config and LAMMPS lines, one thermalised
    state of the dataset as a LAMMPS data file (work/start.data) and as ASE atoms."""

    def __init__(self, system: str, data: Path, segment: int, work: Path, repeat: int = 1):
        from actionmd.data import load_config
        self.cfg = load_config(system)
        self.segment, self.state = start_state(data, segment)
        self.state = repeated(self.state, repeat)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.data_file = (work / "start.data").resolve()
        write_data_file(self.data_file, self.cfg, self.state)
        # the data's masses, which the model was made for: an eam/alloy potential sets its own (Ni 58.689 u,
        # not ASE's 58.6934), and fix actionmd refuses a type whose mass differs from the model's
        data_mass = {chemical_symbols[z]: m for z, m in zip(self.state["numbers"], self.state["masses"])}
        setup = tuple(f"mass {k} {float(data_mass.get(e, element_mass(self.cfg, e)))!r}"
                      for k, e in enumerate(self.cfg["elements"], start=1))
        # the truth's interactions: LAMMPS lines, or (engine: ase) the config's ASE calculator
        self.ase_engine = self.cfg.get("engine") == "ase"
        self.reference = [] if self.ase_engine else reference_potential(system)
        self.common = dict(units=self.cfg["units"], atom_style=self.cfg["atom_style"], setup=setup)
        s = self.state
        self.atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=True,
                           masses=s["masses"])
        self.atoms.set_momenta(momenta_model_to_ase(s["momenta"]))


def truth_run(start: Start, label: str, folder: Path, dt_fs: float, steps: int, every: int, ranks: int) -> DeferredRun:
    """Velocity Verlet under the reference potential from the start state: LAMMPS `fix nve` on RANKS
    ranks, or for an ASE-engine system (CHGNet, ...) ASE's VelocityVerlet with its calculator."""
    if start.ase_engine:
        from actionmd.data.ase_engine import make_calculator
        return DeferredRun(label.replace("(LAMMPS)", "(ASE)"), run_ase_reference, folder, start.atoms.copy(),
                           make_calculator(start.cfg["calculator"]), dt_fs, steps, every)
    return DeferredRun(label, run_lammps, folder, lammps_input(start.data_file, dt_fs, steps, every, ["fix int all nve"],
                                                             start.reference, **start.common),
                       steps, dt_fs, every, ranks=ranks)


class EnergyRescaling:
    """FlashMD-style fix-up of a direct predictor: after each step, scale the momenta so that the total
    energy under the reference potential stays at its initial value (one potential evaluation per step)."""

    def __init__(self, cfg: dict, potential: list[str], start: Atoms):
        from ase.calculators.lammpslib import LAMMPSlib
        self.probe = start.copy()
        self.probe.calc = LAMMPSlib(lmpcmds=potential, atom_types={e: k + 1 for k, e in enumerate(cfg["elements"])},
                                    log_file=None, keep_alive=True)
        with torch_threads_kept():  # LAMMPSlib makes its LAMMPS here (see torch_threads_kept)
            self.total = self.probe.get_potential_energy() + start.get_kinetic_energy()

    def __call__(self, atoms: Atoms) -> None:
        self.probe.positions = atoms.positions
        kinetic_target = self.total - self.probe.get_potential_energy()
        kinetic = atoms.get_kinetic_energy()
        if kinetic_target > 0 and kinetic > 0:
            atoms.set_momenta(atoms.get_momenta() * np.sqrt(kinetic_target / kinetic))


def comparison_parser(description: str, time_ps: float) -> argparse.ArgumentParser:
    """The arguments every comparison of a model against its reference starts from."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system")
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--segment", type=int, default=-1, help="segment of DATA whose last frame starts the runs")
    parser.add_argument("--time-ps", type=float, default=time_ps)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the start state repeated N x N x N, momenta redrawn at its temperature")
    return parser


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    """The action map's solver options, for the ASE runs and the LAMMPS fix alike."""
    parser.add_argument("--method", default="anderson", choices=["anderson", "newton"],
                        help="solver of the action-map runs")
    parser.add_argument("--tol", type=float, default=None, help="solver tolerance in Å (default: the dtype's)")
    parser.add_argument("--maxiter", type=int, default=50, help="solver iterations per step before it gives up")
    parser.add_argument("--anderson-memory", type=int, default=8,
                        help="Anderson mixing memory (stiff systems such as flexible water need ~30)")


def solver_options(args) -> dict:
    """ActionVerlet's keywords for the solver options of add_solver_arguments."""
    return dict(method=args.method, anderson_memory=args.anderson_memory, tol=args.tol, maxiter=args.maxiter)


def fix_solver_words(args) -> str:
    """The same options as fix actionmd keywords."""
    return (f"solver {args.method} memory {args.anderson_memory} maxiter {args.maxiter}"
            + (f" tol {args.tol:g}" if args.tol else ""))


def main(argv=None):
    parser = comparison_parser(__doc__, time_ps=100.0)
    parser.add_argument("--ranks", type=int, default=0, help="also run fix actionmd on N MPI ranks (0: no)")
    parser.add_argument("--reference-ranks", type=int, default=1,
                        help="MPI ranks of the LAMMPS velocity-Verlet runs (the speed baseline)")
    parser.add_argument("--respa", type=float, nargs="*", default=[],
                        help="outer steps (fs) of r-RESPA runs: bonds and angles at the reference dt, pair and "
                             "kspace at the outer step (molecular systems)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["predictor", "free-flight", "vv-stride"],
                        help="runs to leave out (to save time)")
    parser.add_argument("--same-backbone-steps", type=int, default=200,
                        help="time this many velocity-Verlet steps at the reference dt with the model's own "
                             "potential term (an ML potential of the same backbone; speed only; 0: skip)")
    add_solver_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    start = Start(args.system, args.data, args.segment, args.out / "runs", args.repeat)
    cfg, segment, state, atoms = start.cfg, start.segment, start.state, start.atoms
    work, data_file, reference, common = start.work, start.data_file, start.reference, start.common
    meta = read_metadata(args.model)
    stride, dt = meta.stride, state["dt_fs"]
    every = int(round(stride / dt))
    long_steps = int(round(args.time_ps * 1000 / stride))
    condition = {"temperature_K": segment.temperature_K, "composition": segment.composition}
    print(f"{args.system}: {len(atoms)} atoms, {condition}, model stride {stride:g} fs = {stride / dt:g} x {dt:g} fs, "
          f"{args.time_ps:g} ps per run")

    def quiet_ase(label, folder, **options):
        """An ASE run, without the warning mode="predictor" gives (it is a baseline here, on purpose)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_ase_action(label, work / folder, atoms.copy(), args.model, long_steps, **options)

    fix_line = (f"fix int all actionmd {args.model.resolve()} types {' '.join(cfg['elements'])} "
                + fix_solver_words(args))
    plan = [truth_run(start, f"velocity Verlet {dt:g} fs (LAMMPS)", work / "vv-reference", dt, long_steps * every,
                      every, args.reference_ranks)]
    if "vv-stride" not in args.skip:
        plan.append(truth_run(start, f"velocity Verlet {stride:g} fs (LAMMPS)", work / "vv-stride", stride, long_steps,
                              1, args.reference_ranks))
    for outer in args.respa:
        plan.append(respa_run(outer, dt, stride, args.time_ps, cfg, data_file, reference, common, work,
                              args.reference_ranks))
    if "predictor" not in args.skip:
        plan.append(DeferredRun(f"predictor alone {stride:g} fs (ASE)", quiet_ase, "predictor", mode="predictor"))
        if cfg["units"] == "metal" and not start.ase_engine:  # ASE's LAMMPSlib speaks metal units
            plan.append(DeferredRun(f"predictor + energy rescaling {stride:g} fs (ASE)", quiet_ase, "predictor-rescaled",
                                    mode="predictor", after_step=EnergyRescaling(cfg, reference, atoms)))
    plan.append(DeferredRun(f"action map {stride:g} fs, predictor guess (ASE)", quiet_ase, "action",
                            guess="predictor", **solver_options(args)))
    if "free-flight" not in args.skip:
        plan.append(DeferredRun(f"action map {stride:g} fs, free-flight guess (ASE)", quiet_ase, "action-free-flight",
                                guess="free_flight", **solver_options(args)))
    if args.ranks:
        plan.append(DeferredRun(f"action map {stride:g} fs (LAMMPS fix actionmd, {args.ranks} ranks)", run_lammps,
                                work / "fix", lammps_input(
                                    data_file, stride, long_steps, 1, [fix_line],
                                    fix_actionmd_interactions(meta, reference),
                                    thermo_extra=("f_int[1]", "f_int[3]"), **common),
                                long_steps, stride, 1, ranks=args.ranks))
    if args.same_backbone_steps:
        plan.append(DeferredRun(SAME_BACKBONE, same_backbone_speed, args.model, atoms.copy(), dt,
                                args.same_backbone_steps))

    runs, failures = run_all(plan)
    backbone = next((r for r in runs if r.frames is None), None)
    results, report, speed = evaluate_runs(runs, failures, args.system, cfg["units"], args.out, backbone)
    summary = {"system": args.system, "model": str(args.model), "data": str(args.data), "condition": condition,
               "n_atoms": len(atoms), "stride_fs": stride, "reference_dt_fs": dt, "time_ps": args.time_ps,
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_average": os.getloadavg()},
               "runs": {r.label: {"wall_s_per_ps": r.wall_seconds / r.simulated_ps, "ranks": r.ranks,
                                  "speedup_vs_reference": runs[0].wall_seconds / runs[0].simulated_ps
                                  / (r.wall_seconds / r.simulated_ps),
                                  "speedup_vs_same_backbone": None if backbone is None else
                                  (backbone.wall_seconds / backbone.simulated_ps) / (r.wall_seconds / r.simulated_ps),
                                  "mean_iterations": r.mean_iterations, "mean_evaluations": r.mean_evaluations,
                                  **_metrics(results["runs"].get(r.label))} for r in runs},
               "failures": failures}
    (args.out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=1))
    print("\n" + text_table(results) + "\n\n" + speed + f"\n\nreport: {report}")
    for label, why in failures.items():
        print(f"failed: {label}: {why}")


def respa_run(outer_fs: float, dt_fs: float, stride_fs: float, time_ps: float, cfg: dict, data_file: Path,
              reference: list[str], common: dict, work: Path, ranks: int) -> DeferredRun:
    """r-RESPA at OUTER_FS: bonds and angles every dt (the stiff O-H stretch), pair and kspace every outer
    step; frames saved at the model's stride, so it is evaluated like every other run."""
    if cfg["atom_style"] not in MOLECULAR_STYLES:
        raise SystemExit(f"--respa: {cfg['atom_style']!r} has no bonds to put on an inner level; r-RESPA "
                         "applies to molecular systems (e.g. water)")
    inner = outer_fs / dt_fs
    per_dump = stride_fs / outer_fs
    if abs(inner - round(inner)) > 1e-9 or abs(per_dump - round(per_dump)) > 1e-9:
        raise SystemExit(f"--respa {outer_fs:g}: the outer step must be a multiple of the reference dt {dt_fs:g} fs "
                         f"and divide the model's stride {stride_fs:g} fs")
    steps = int(round(time_ps * 1000 / outer_fs))
    kspace = " kspace 2" if any(line.split()[0] == "kspace_style" for line in reference) else ""
    respa = f"run_style respa 2 {int(round(inner))} bond 1 angle 1 pair 2{kspace}"
    return DeferredRun(f"r-RESPA {dt_fs:g}/{outer_fs:g} fs (LAMMPS)", run_lammps, work / f"respa-{outer_fs:g}",
                       lammps_input(data_file, outer_fs, steps, int(round(per_dump)), ["fix int all nve", respa],
                                    reference, **common),
                       steps, outer_fs, int(round(per_dump)), ranks=ranks)


SAME_BACKBONE = "same-backbone ML potential, velocity Verlet (speed only)"


def same_backbone_speed(label: str, model: Path, atoms: Atoms, dt_fs: float, steps: int) -> RunResult:
    """Wall time per ps of velocity Verlet at dt with the action network's potential term as an ML
    potential: the same backbone and size, one gradient per reference step (FlashMD's comparison)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from actionmd.reference import PotentialCalculator
    atoms.calc = PotentialCalculator(str(model))
    dynamics = VelocityVerlet(atoms, dt_fs * units.fs)
    dynamics.run(5)  # warm-up: neighbour list, TorchScript optimisation
    start = time.perf_counter()
    dynamics.run(steps)
    return RunResult(label, None, dt_fs,
                     time.perf_counter() - start, steps * dt_fs / 1000, 1, None, 1.0)


def _metrics(run):
    if run is None:
        return {}
    energy, t = run["energy"] or {}, run["temperature"]["per_species"]
    versus = run.get("vs_reference") or {}
    return {"drift_meV_per_atom_ps": energy.get("drift_meV_per_atom_ps"),
            "fluctuation_meV_per_atom": energy.get("fluctuation_meV_per_atom"),
            "temperature_K": {sp: v["mean_K"] for sp, v in t.items()},
            "rdf_l1_max": run["goals"]["rdf_l1"]["value"], "diffusion_error_max": run["goals"]["diffusion"]["value"],
            "diffusion_relative": versus.get("diffusion_relative"), "goals": {k: g["met"] for k, g in run["goals"].items()}}


if __name__ == "__main__":
    main()
