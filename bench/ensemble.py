"""One side by side from several independent starts, pooled: what a single run cannot resolve.

    python bench/ensemble.py SYSTEM MODEL DATA.h5 --segments 0 1 2 3 --out DIR [side_by_side options]

A 100 ps run of a fluid measures its own diffusion coefficient to a few per cent per atom, but two runs
from different states differ by more (collective, slow motions), so one run cannot judge a 10 % goal. Each
segment of DATA (independent thermalised states: generate them with a long protocol.decorrelation_steps)
starts one bench/side_by_side.py run into DIR/start<segment>; a start whose results.json exists is not run
again, so a killed ensemble resumes. Options after the known ones go to side_by_side.py unchanged.

Pooled per run label by actionmd.evaluation.ensemble (standard errors from the scatter between starts):
D per species relative to the truth's, species temperatures and their spread, RDF L1 of the averaged g(r),
drift and solver iterations. Writes DIR/summary.json and prints a Markdown table.
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

import side_by_side
from actionmd.evaluation.ensemble import markdown_table, pool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # "--segment" must not pass for "--segments"
    parser.add_argument("system")
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--segments", type=int, nargs="+", required=True,
                        help="segments of DATA, one independent start each (at least 2)")
    parser.add_argument("--out", type=Path, required=True)
    args, passed_on = parser.parse_known_args(argv)
    if len(set(args.segments)) < 2 or len(set(args.segments)) != len(args.segments):
        parser.error(f"--segments {args.segments}: give at least two distinct segments (each an independent start); "
                     "the scatter between starts is the error bar")
    for option in ("--segment", "--out"):
        if option in passed_on:
            parser.error(f"{option} is set per start by this script; leave it out")

    folders = [args.out / f"start{segment}" for segment in args.segments]
    for segment, folder in zip(args.segments, folders):
        if (folder / "results.json").exists():
            print(f"start {segment}: {folder / 'results.json'} exists, kept")
            continue
        side_by_side.main([args.system, str(args.model), str(args.data), "--segment", str(segment),
                           "--out", str(folder), *passed_on])
    starts = [json.loads((folder / "results.json").read_text()) for folder in folders]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in folders]
    iterations = [{label: run["mean_iterations"] for label, run in s["runs"].items()} for s in summaries]
    pooled = pool(starts, iterations)
    summary = {"system": args.system, "model": str(args.model), "data": str(args.data),
               "segments": args.segments, "side_by_side_options": passed_on,
               "n_atoms": summaries[0]["n_atoms"], "time_ps": summaries[0]["time_ps"],
               "condition": summaries[0]["condition"], "truth": starts[0]["reference"],
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
               "runs": pooled}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(markdown_table(summary))


if __name__ == "__main__":
    sys.exit(main())
