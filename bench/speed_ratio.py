"""Speed goals on a noisy machine: wall time per simulated ps, repeated and interleaved.

    python bench/speed_ratio.py SYSTEM MODEL DATA.h5 [--time-ps 2] [--repeat N] [--repeats 3] [--reference-ranks 2]
                                [--ranks 2] [--anderson-memory 30 --tol 1e-5 ...] --out FILE.json

bench/side_by_side.py times every run once, and one run's wall time on this shared 2-vCPU VM varies by
±20 % from one minute to the next. Here, from the same held-out state, each round runs in turn:
  - the truth: LAMMPS velocity Verlet at the dataset's reference dt (--reference-ranks MPI ranks), or for
    an ASE-engine system (si-chgnet) ASE's VelocityVerlet with the config's calculator,
  - the action map in ASE (ActionVerlet, predictor guess, --method/--tol/--maxiter/--anderson-memory),
  - the action map in LAMMPS (`fix actionmd`, --ranks; 0 to skip),
  - the same-backbone ML potential with velocity Verlet at the reference dt (ASE),
with the output of the side by side (a frame per stride). LAMMPS runs are timed by their own "Loop time"
(integration only), ASE runs after a warm-up of a few strides (TorchScript specialises on its first calls).
The result: every run's s/ps per round, their medians, and the medians of the per-round speed-ups against
the truth and against the same-backbone ML potential.
"""
import json
import os
import platform
import statistics
import time
from pathlib import Path

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps: docs/lammps.md)

from actionmd.data.ase_engine import describe
from actionmd.demo.runs import fix_actionmd_interactions, lammps_input, run_ase_action, run_lammps
from actionmd.model_file import read_metadata
from side_by_side import (Start, add_solver_arguments, comparison_parser, fix_solver_words,
                          same_backbone_speed, solver_options, truth_run)


def main(argv=None):
    parser = comparison_parser(__doc__, time_ps=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-ranks", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=2, help="fix actionmd on N MPI ranks (0: skip)")
    add_solver_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    work = args.out.with_suffix("") / "runs"
    start = Start(args.system, args.data, args.segment, work, args.repeat)
    meta = read_metadata(args.model)
    dt, stride = start.state["dt_fs"], meta.stride
    every = int(round(stride / dt))
    strides = int(round(args.time_ps * 1000 / stride))
    truth, ase, fix, mlp = (f"velocity Verlet {dt:g} fs (ASE, {describe(start.cfg['calculator'])})" if start.ase_engine
                            else f"velocity Verlet {dt:g} fs (LAMMPS, {args.reference_ranks} ranks)",
                            f"action map {stride:g} fs (ASE)",
                            f"action map {stride:g} fs (LAMMPS fix actionmd, {args.ranks} ranks)",
                            f"same-backbone ML potential, velocity Verlet {dt:g} fs (ASE)")
    fix_line = (f"fix int all actionmd {args.model.resolve()} types {' '.join(start.cfg['elements'])} "
                f"{fix_solver_words(args)}")
    solver = solver_options(args)
    run_ase_action("warm-up", work / "ase", start.atoms.copy(), args.model, 5, guess="predictor", **solver)

    rounds = []
    for _ in range(args.repeats):
        row = {}
        result = truth_run(start, truth, work / "truth", dt, strides * every, every, args.reference_ranks)()
        row[truth] = result.wall_seconds / result.simulated_ps  # run_lammps times its "Loop time"
        result = run_ase_action(ase, work / "ase", start.atoms.copy(), args.model, strides, guess="predictor",
                                **solver)
        row[ase] = result.wall_seconds / result.simulated_ps
        row["iterations per stride (ASE)"] = result.mean_iterations
        if args.ranks:
            result = run_lammps(fix, work / "fix", lammps_input(
                start.data_file, stride, strides, 1, [fix_line],
                fix_actionmd_interactions(meta, start.reference), **start.common),
                strides, stride, 1, ranks=args.ranks)
            row[fix] = result.wall_seconds / result.simulated_ps
        result = same_backbone_speed(mlp, args.model, start.atoms.copy(), dt, strides * every)
        row[mlp] = result.wall_seconds / result.simulated_ps
        rounds.append(row)
        print(json.dumps(row))

    timed = [label for label in (truth, ase, fix, mlp) if label in rounds[0]]
    median = {label: statistics.median(r[label] for r in rounds) for label in timed}
    speedup = {label: {"vs_truth": statistics.median(r[truth] / r[label] for r in rounds),
                       "vs_same_backbone_mlp": statistics.median(r[mlp] / r[label] for r in rounds)}
               for label in timed}
    summary = {"system": args.system, "model": str(args.model), "n_atoms": len(start.atoms), "time_ps": args.time_ps,
               "repeats": args.repeats, "reference_dt_fs": dt, "stride_fs": stride,
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_average": os.getloadavg()},
               "finished_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "seconds_per_ps": {label: [r[label] for r in rounds] for label in timed},
               "median_seconds_per_ps": median, "median_speedup": speedup,
               "mean_iterations_ase": statistics.mean(r["iterations per stride (ASE)"] for r in rounds)}
    args.out.write_text(json.dumps(summary, indent=1))
    lines = ["| run | median s/ps | rounds s/ps | vs truth | vs same-backbone MLP |", "|---|---|---|---|---|"]
    for label in timed:
        lines.append(f"| {label} | {median[label]:.3g} | {' / '.join(f'{r[label]:.3g}' for r in rounds)} | "
                     f"{speedup[label]['vs_truth']:.2f} | {speedup[label]['vs_same_backbone_mlp']:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
