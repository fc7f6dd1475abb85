"""A long run of the action map alone, judged under the reference potential: energy drift and per-species
temperatures over a time the truth itself would take too long to match (100 ps of SNAP is hours here).

    python bench/long_map_run.py SYSTEM MODEL START.data --time-ps 100 --out bench/results/long_NAME.json

From a LAMMPS data file with velocities (e.g. lammps_examples/inp-snap/inp.data), ASE ActionVerlet at the
model's stride, a frame every stride, then actionmd.evaluation with SYSTEM's own potential. Compare the
temperatures with a truth run of the same state (bench/side_by_side.py) for equipartition.
"""
import argparse
import json
import warnings
from pathlib import Path

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps)
from ase.data import atomic_numbers
from ase.io import read

from actionmd.data import load_config
from actionmd.demo.runs import run_ase_action
from actionmd.evaluation import evaluate, read_trajectory, to_jsonable
from actionmd.model_file import read_metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system")
    parser.add_argument("model", type=Path)
    parser.add_argument("start", type=Path, help="LAMMPS data file (atomic style) with velocities")
    parser.add_argument("--time-ps", type=float, default=100.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    elements = load_config(args.system)["elements"]
    atoms = read(args.start, format="lammps-data", atom_style="atomic", units="metal",
                 Z_of_type={k + 1: atomic_numbers[e] for k, e in enumerate(elements)})
    strides = int(round(args.time_ps * 1000 / read_metadata(args.model).stride))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an ExtrapolationWarning is counted in the summary's solver figures
        run = run_ase_action("action map", args.out.with_suffix("") / "runs", atoms, args.model, strides)
    trajectory = read_trajectory(run.frames, interval_fs=run.frame_interval_fs, types=elements, units="metal")
    measured = evaluate({"action map": trajectory}, system=args.system, progress=False)["runs"]["action map"]
    energy = measured["energy"]
    summary = {"system": args.system, "model": str(args.model), "start": str(args.start), "time_ps": args.time_ps,
               "atoms": len(atoms), "wall_s_per_ps": run.wall_seconds / run.simulated_ps,
               "mean_iterations": run.mean_iterations, "mean_evaluations": run.mean_evaluations,
               "drift_meV_per_atom_ps": energy["drift_meV_per_atom_ps"],
               "drift_stderr_meV_per_atom_ps": energy["drift_stderr_meV_per_atom_ps"],
               "fluctuation_meV_per_atom": energy["fluctuation_meV_per_atom"],
               "temperature_K": {s: {"mean": t["mean_K"], "stderr": t["stderr_K"]}
                                 for s, t in measured["temperature"]["per_species"].items()},
               "temperature_spread": measured["temperature"]["spread"],
               "temperature_spread_stderr": measured["temperature"]["spread_stderr"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_jsonable(summary), indent=1) + "\n")
    print(json.dumps(to_jsonable(summary), indent=1))


if __name__ == "__main__":
    main()
