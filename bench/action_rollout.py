"""How far the action map runs from a held-out state: per-species temperature, solver work and Newton
fallbacks per stride, until the end or the first unsolvable step (which is reported, not raised).

    python bench/action_rollout.py MODEL DATA.h5 --strides 300 [--anderson-memory 30 --tol 1e-6 --maxiter 60]
                                   [--out bench/results/rollout_NAME.json]

For models not yet fit for the full side by side (bench/side_by_side.py), e.g. the 4 fs water model.
"""
import argparse
import json
import time
from pathlib import Path

from ase import units

from actionmd.ase import ActionVerlet
from actionmd.model_file import read_metadata
from actionmd.solver import SolverConvergenceError
from nve_validation import start_state


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--strides", type=int, default=300)
    parser.add_argument("--anderson-memory", type=int, default=8)
    parser.add_argument("--tol", type=float, default=None)
    parser.add_argument("--maxiter", type=int, default=50)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    atoms, _ = start_state(args.data)
    dyn = ActionVerlet(atoms, args.model, anderson_memory=args.anderson_memory, tol=args.tol, maxiter=args.maxiter)
    species = sorted(set(atoms.numbers.tolist()))
    rows, failure, start = [], None, time.perf_counter()
    for stride in range(1, args.strides + 1):
        try:
            dyn.run(1)
        except SolverConvergenceError as error:
            failure = str(error)
            break
        kinetic = 0.5 * (atoms.get_momenta() ** 2).sum(1) / atoms.get_masses()
        temperatures = {int(z): float(2 * kinetic[atoms.numbers == z].mean() / (3 * units.kB)) for z in species}
        report = dyn.report
        rows.append({"stride": stride, "temperature_K": temperatures, "evaluations": report.evaluations,
                     "fell_back": report.fell_back})
        if stride % 25 == 0:
            print(f"stride {stride}: T {temperatures} evaluations {report.evaluations} "
                  f"fallbacks so far {dyn.fallbacks} wall {time.perf_counter() - start:.0f} s", flush=True)
    stride_fs = read_metadata(args.model).stride
    result = {"model": args.model, "data": args.data, "stride_fs": stride_fs, "strides_run": len(rows),
              "time_fs": len(rows) * stride_fs, "failure": failure, "solver": dyn.solver_summary(),
              "temperature_range_K": {z: [min(r["temperature_K"][z] for r in rows),
                                          max(r["temperature_K"][z] for r in rows)] for z in species} if rows else {},
              "wall_s": time.perf_counter() - start, "rows": rows}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    out = Path(args.out or f"bench/results/rollout_{Path(args.model).stem}.json")
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
