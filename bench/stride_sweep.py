"""Stride sweep: the largest stride that still meets the goals, for one built-in system.

    python bench/stride_sweep.py SYSTEM DATA.h5 MODEL [MODEL ...] [--time-ps 20] [--tols TOL ...] --out DIR

Each MODEL is a learned action trained at its own stride (e.g. models/lj-mixture/lj-mixture-{20,40}fs.pt).
From one thermalised state of DATA (held out), every model runs the action map in ASE (predictor guess),
beside LAMMPS velocity Verlet at the same stride; all are evaluated against one velocity-Verlet run at the
reference dt, with the goals of BENCHMARKS.md (drift, temperature spread, RDF, diffusion).
--tols runs every model at each solver tolerance (Å; "default" is the model dtype's): what a looser solve
saves in iterations and costs in drift.
Writes DIR/sweep.json and DIR/report.md (the per-run report with plots, then the sweep table).
"""
import argparse
import json
import math
import os
import platform
from functools import reduce
from pathlib import Path

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps: docs/lammps.md)

from actionmd.demo.pipeline import DeferredRun, evaluate_runs, run_all
from actionmd.demo.runs import lammps_input, run_ase_action, run_lammps
from actionmd.evaluation import to_jsonable
from actionmd.model_file import read_metadata
from side_by_side import Start, _metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system")
    parser.add_argument("data", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--segment", type=int, default=-1)
    parser.add_argument("--time-ps", type=float, default=20.0)
    parser.add_argument("--method", default="anderson", choices=["anderson", "newton"])
    parser.add_argument("--tols", nargs="+", default=[None], type=_tolerance,
                        help="solver tolerances in Å to run each model at (default: the model dtype's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    start = Start(args.system, args.data, args.segment, args.out / "runs")
    cfg, segment, state, atoms = start.cfg, start.segment, start.state, start.atoms
    work, data_file, reference, common = start.work, start.data_file, start.reference, start.common
    dt = state["dt_fs"]
    strides = {model: read_metadata(model).stride for model in args.models}
    ratios = {model: stride / dt for model, stride in strides.items()}
    off = [f"{m} ({strides[m]:g} fs)" for m, r in ratios.items() if abs(r - round(r)) > 1e-9]
    if off:
        raise SystemExit(f"strides must be multiples of the data's reference dt {dt:g} fs: {', '.join(off)}")
    dump_every = reduce(math.gcd, (int(round(r)) for r in ratios.values()))
    reference_steps = int(round(args.time_ps * 1000 / dt))

    truth = f"velocity Verlet {dt:g} fs (LAMMPS)"
    plan = [DeferredRun(truth, run_lammps, work / "vv-reference",
                        lammps_input(data_file, dt, reference_steps, dump_every, ["fix int all nve"], reference,
                                     **common), reference_steps, dt, dump_every)]
    rows = []
    for model in sorted(args.models, key=strides.get):
        stride = strides[model]
        steps = int(round(args.time_ps * 1000 / stride))
        verlet = f"velocity Verlet {stride:g} fs (LAMMPS)"
        plan.append(DeferredRun(verlet, run_lammps, work / f"vv-{stride:g}",
                                lammps_input(data_file, stride, steps, 1, ["fix int all nve"], reference, **common),
                                steps, stride, 1))
        for tol in args.tols:
            suffix = "" if tol is None else f" tol {tol:g} Å"
            action = f"action map {stride:g} fs{suffix} (ASE)"
            rows.append((stride, tol, action, verlet))
            plan.append(DeferredRun(action, lambda label, m=model, n=steps, s=stride, t=tol: run_ase_action(
                label, work / (f"action-{s:g}" + ("" if t is None else f"-tol{t:g}")), atoms.copy(), m, n,
                guess="predictor", method=args.method, tol=t)))

    runs, failures = run_all(plan)
    results, report, _ = evaluate_runs(runs, failures, args.system, cfg["units"], args.out)
    by_label = {r.label: r for r in runs}
    sweep = []
    for stride, tol, action, verlet in rows:
        entry = {"stride_fs": stride, "ratio_to_reference_dt": stride / dt, "solver_tol_A": tol}
        for kind, label in (("action_map", action), ("velocity_verlet", verlet)):
            run = by_label.get(label)
            entry[kind] = {"failed": failures[label]} if label in failures or run is None else {
                "wall_s_per_ps": run.wall_seconds / run.simulated_ps, "mean_iterations": run.mean_iterations,
                **_metrics(results["runs"].get(label))}
        sweep.append(entry)
    meets = [e["stride_fs"] for e in sweep if e["action_map"].get("goals")  # n/a goals (None) do not count
             and all(met for met in e["action_map"]["goals"].values() if met is not None)]
    summary = {"system": args.system, "data": str(args.data), "time_ps": args.time_ps, "reference_dt_fs": dt,
               "condition": {"temperature_K": segment.temperature_K, "composition": segment.composition},
               "n_atoms": len(atoms), "largest_stride_meeting_all_goals_fs": max(meets) if meets else None,
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_average": os.getloadavg()}, "sweep": sweep}
    (args.out / "sweep.json").write_text(json.dumps(to_jsonable(summary), indent=1))
    table = sweep_table(sweep)
    report.write_text(report.read_text() + "\n## Stride sweep\n\n" + table + "\n")
    print(table + f"\n\nlargest stride meeting all goals: {summary['largest_stride_meeting_all_goals_fs']} fs"
          f"\nreport: {report}")


def _tolerance(text: str):
    return None if text == "default" else float(text)


def sweep_table(sweep: list[dict]) -> str:
    """One row per stride: the action map's figures and goal verdicts, and whether velocity Verlet still runs."""
    header = ["stride", "x ref dt", "solver tol [Å]", "drift [meV/atom/ps]", "T per species [K]", "RDF L1", "max |dD|/D_ref",
              "iterations", "wall s/ps", "goals met", "velocity Verlet at the stride"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    num = lambda x, f: "-" if x is None else format(x, f)
    for e in sweep:
        a, v = e["action_map"], e["velocity_verlet"]
        tol = "default" if e.get("solver_tol_A") is None else f"{e['solver_tol_A']:g}"
        verlet = "fails" if "failed" in v else f"runs (drift {num(v.get('drift_meV_per_atom_ps'), '.2g')})"
        if "failed" in a:
            cells = [f"{e['stride_fs']:g} fs", f"{e['ratio_to_reference_dt']:g}", tol,
                     f"failed: {a['failed'][:80]}"] + \
                    [""] * 6 + [verlet]
        else:
            goals = a.get("goals") or {}
            cells = [f"{e['stride_fs']:g} fs", f"{e['ratio_to_reference_dt']:g}", tol,
                     num(a.get("drift_meV_per_atom_ps"), ".2g"),
                     " / ".join(f"{k} {t:.1f}" for k, t in (a.get("temperature_K") or {}).items()),
                     num(a.get("rdf_l1_max"), ".3f"), num(a.get("diffusion_error_max"), ".0%"),
                     num(a.get("mean_iterations"), ".1f"), num(a.get("wall_s_per_ps"), ".3g"),
                     ", ".join(k for k, ok in goals.items() if ok) or "none", verlet]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
