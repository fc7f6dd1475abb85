"""NVE validation of a model against its reference potential, beside velocity Verlet.

    python bench/nve_validation.py MODEL DATA.h5 [--time-ps 20] [--out bench/results/nve_NAME.json]

From the last frame of the dataset's last segment (a thermalised state), runs
  1. ActionVerlet with MODEL at its stride,
  2. ASE VelocityVerlet at the dataset's reference dt (the truth),
  3. ASE VelocityVerlet at the model's stride,
saving a frame every --sample-fs, then measures all three with actionmd.evaluation (docs/evaluation.md)
against run 2, with the dataset's own LAMMPS potential: total-energy drift and fluctuation, per-species
temperatures, RDF, diffusion, spectra. This script adds only what evaluation cannot see: iterations per
step and wall time per simulated ps. Writes the JSON summary and a full report (report.md, plots) beside it.
"""
import argparse
import json
import platform
import time
from pathlib import Path

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps: docs/lammps.md)
import numpy as np
from ase import Atoms, units
from ase.calculators.lammpslib import LAMMPSlib
from ase.md.verlet import VelocityVerlet

from actionmd.ase import ActionVerlet
from actionmd.data import load_dataset, reference_config
from actionmd.evaluation import Trajectory, evaluate, text_table, write_report
from actionmd.evaluation.side_by_side import MIN_FRAMES
from actionmd.model_file import read_metadata
from actionmd.units import momenta_model_to_ase


def force_calculator(cfg):
    """ASE's LAMMPSlib with the dataset's potential, to drive ASE's VelocityVerlet (it speaks metal units)."""
    if cfg["units"] != "metal":
        raise SystemExit(f"LAMMPSlib here speaks metal units; the dataset is {cfg['units']}")
    return LAMMPSlib(lmpcmds=list(cfg["potential"]), atom_types={e: k + 1 for k, e in enumerate(cfg["elements"])},
                     log_file=None, keep_alive=True)


def start_state(data_path):
    dataset = load_dataset(data_path)
    segment = dataset.segments[-1]
    atoms = Atoms(numbers=segment.atomic_numbers, positions=segment.positions[-1], cell=segment.cell, pbc=True,
                  masses=segment.masses)
    atoms.set_momenta(momenta_model_to_ase(segment.momenta[-1]))
    return atoms, dataset.dt_fs


def run(label, make_dynamics, atoms, stride_fs, time_ps, sample_fs):
    """Run, keeping a frame every ~sample_fs; return (Trajectory or None, timing/solver summary)."""
    atoms = atoms.copy()
    dynamics = make_dynamics(atoms)
    steps = int(round(time_ps * 1000 / stride_fs))
    every = max(1, int(round(sample_fs / stride_fs)))
    frames = []
    dynamics.attach(lambda: frames.append(atoms.copy()), interval=every)
    start = time.perf_counter()
    status = "ok"
    try:
        with np.errstate(all="raise"):
            dynamics.run(steps)
    except Exception as err:  # a blow-up is a result here, not a crash
        status = f"failed: {type(err).__name__}"
    wall = time.perf_counter() - start
    simulated_ps = (len(frames) - 1) * every * stride_fs / 1000
    summary = {"label": label, "stride_fs": stride_fs, "status": status, "simulated_ps": simulated_ps,
               "wall_s_per_ps": wall / max(simulated_ps, 1e-9)}
    if hasattr(dynamics, "solver_summary"):
        summary.update(dynamics.solver_summary())
    usable = [a for a in frames if np.isfinite(a.positions).all() and np.isfinite(a.get_momenta()).all()]
    trajectory = Trajectory.from_atoms(usable, every * stride_fs, source=label) if len(usable) >= MIN_FRAMES else None
    print(json.dumps(summary))
    return trajectory, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--time-ps", type=float, default=20.0)
    parser.add_argument("--reference-time-ps", type=float, default=None, help="default: --time-ps")
    parser.add_argument("--sample-fs", type=float, default=100.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    stride = read_metadata(args.model).stride
    cfg = reference_config(args.data)
    atoms, reference_dt = start_state(args.data)
    calculator = force_calculator(cfg)

    def verlet(dt):
        def make(a):
            a.calc = calculator
            return VelocityVerlet(a, dt * units.fs)
        return make

    reference = f"VelocityVerlet {reference_dt:g} fs (reference)"
    runs = [
        run(f"ActionVerlet {stride:g} fs", lambda a: ActionVerlet(a, args.model), atoms, stride, args.time_ps,
            args.sample_fs),
        run(reference, verlet(reference_dt), atoms, reference_dt, args.reference_time_ps or args.time_ps,
            args.sample_fs),
        run(f"VelocityVerlet {stride:g} fs", verlet(stride), atoms, stride, args.time_ps, args.sample_fs),
    ]
    trajectories = {s["label"]: t for t, s in runs if t is not None}
    results = evaluate(trajectories, reference if reference in trajectories else None, system=cfg)
    out = Path(args.out or f"bench/results/nve_{Path(args.model).stem}.json")
    report = write_report(results, out.with_suffix(""))[0]
    print(text_table(results))
    summaries = []
    for _, summary in runs:
        measured = results["runs"].get(summary["label"])
        if measured:
            summary["goals"] = {k: {"value": g["value"], "met": g["met"]} for k, g in measured["goals"].items()}
            if measured["energy"]:
                summary["drift_meV_per_atom_ps"] = measured["energy"]["drift_meV_per_atom_ps"]
                summary["fluctuation_meV_per_atom"] = measured["energy"]["fluctuation_meV_per_atom"]
            summary["temperature_K"] = {s: t["mean_K"] for s, t in measured["temperature"]["per_species"].items()}
            summary["diffusion_A2_per_ps"] = {s: d["msd_A2_per_ps"]
                                              for s, d in measured["dynamics"]["diffusion"].items()}
        summaries.append(summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "data": args.data, "atoms": len(atoms),
                               "machine": {"cpu": platform.machine()}, "report": str(report),
                               "results": summaries}, indent=1))
    print(f"report: {report}")


if __name__ == "__main__":
    main()
