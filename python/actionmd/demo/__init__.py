"""`make demo`: the shipped model of the embedded default system, run by LAMMPS on MPI ranks and by ASE,
evaluated against velocity Verlet at the reference time step.

Embedded default: zincblende InP with the SNAP potential InP_JCPA2020 (In 114.8 u / P 31.0 u, an expensive
many-body reference: ~0.45 ms per atom-step on one core) and models/inp-snap/inp-snap-20fs.pt, a learned
action at a 20 fs stride, 20x the 1 fs reference dt. Five runs from the same held-out 700 K state:
  1. LAMMPS, SNAP + velocity Verlet at the reference dt (the truth), on the fix's MPI ranks;
  2. LAMMPS, SNAP + velocity Verlet at the long stride (it loses atoms);
  3. ASE, the model's direct predictor alone (no structure preservation: its energy and temperatures drift);
  4. LAMMPS, `fix actionmd` at the long stride on 2 MPI ranks (`pair_style zero`);
  5. ASE, ActionVerlet at the long stride.
All are evaluated alike (actionmd.evaluation): energy under SNAP, per-species temperatures, RDF, diffusion,
each judged against the truth's own noise; the first line printed is the speed-up over the truth, and a
Markdown report with plots is written. `make demo TRAIN=1` first regenerates the reference data and
retrains the model (about an hour on 2 cores).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actionmd.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/inp-snap/inp-snap-20fs.pt")
    parser.add_argument("--data-file", type=Path, default=ROOT / "lammps_examples/inp-snap/inp.data",
                        help="LAMMPS data file with the start state (positions and velocities)")
    parser.add_argument("--system", default="inp-snap", help="built-in system or YAML: the reference potential")
    parser.add_argument("--time-ps", type=float, default=10.0, help="simulated time of every run [ps]")
    parser.add_argument("--reference-dt", type=float, default=1.0, help="velocity-Verlet reference dt [fs]")
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of the fix actionmd run")
    parser.add_argument("--output", type=Path, default=ROOT / "out/demo", help="work directory and report")
    parser.add_argument("--train", action="store_true", help="regenerate the data and retrain the model first")
    args = parser.parse_args(argv)

    from .pipeline import run_demo, train_model
    shutil.rmtree(args.output / "runs", ignore_errors=True)  # a fresh set of runs, the report overwritten
    model = train_model(args.system, args.output / "train") if args.train else args.model.resolve()
    report = run_demo(model, args.data_file.resolve(), args.system, args.time_ps, args.reference_dt, args.ranks,
                      args.output)
    print(f"\nreport: {report}")
    return 0
