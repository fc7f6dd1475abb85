"""`make demo`: the shipped model of the embedded default system, run by LAMMPS on MPI ranks and by ASE,
evaluated against velocity Verlet at the reference time step.

Embedded default: the Ne–Xe Lennard-Jones mixture (mass ratio 6.5, the equipartition test) with
models/lj-mixture/lj-mixture-20fs.pt, a learned action at a 20 fs stride, 20x the 1 fs reference dt.
Four runs from the same thermalised state:
  1. LAMMPS, velocity Verlet at the reference dt with the reference pair style (the truth);
  2. LAMMPS, velocity Verlet at the long stride;
  3. LAMMPS, `fix actionmd` at the long stride on 2 MPI ranks (`pair_style zero`);
  4. ASE, ActionVerlet at the long stride.
All are evaluated alike (actionmd.evaluation): energy under the reference potential, per-species
temperatures, RDF, diffusion; a table is printed and a Markdown report with plots is written.
`make demo TRAIN=1` first regenerates the reference data and retrains the model (about 45 min here).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actionmd.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models/lj-mixture/lj-mixture-20fs.pt")
    parser.add_argument("--data-file", type=Path, default=ROOT / "lammps_examples/lj-mixture/lj-mixture.data",
                        help="LAMMPS data file with the start state (positions and velocities)")
    parser.add_argument("--system", default="lj-mixture", help="built-in system or YAML: the reference potential")
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
