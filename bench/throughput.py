"""Fully converged atom-steps per second of the action map against system size, on CPU or one GPU.

    python bench/throughput.py [--cells 3 6 12 19 30] [--strides 5] [--device cuda] [--max-stride-s 60] \
        [--out bench/results/throughput_<device>.json]

The goal of issue 6 on one GPU: >= 2e6 fully converged atom-steps/s at ~100k atoms, and the curve up to
10^6 atoms. System: the embedded Ne–Xe crystal (actionmd.examples.ne_xe_crystal, 4 x cells^3 atoms: 30
cells = 108,000, 63 cells = 1,000,188) at 100 K, integrated by ActionVerlet with the shipped
models/lj-mixture/lj-mixture-20fs.pt (float32, predictor guess, default tolerance): what a user runs.
Per size: two warm-up strides (TorchScript specialises, CUDA allocates), then --strides timed strides
(synchronised on the GPU), each size in a fresh process (so that its peak memory and its malloc setting,
see python/actionmd/allocator.py, are its own). Reports wall s per stride, atom-steps/s (atoms x strides
/ s), solver iterations and model evaluations per stride, evaluations x atoms / s, and peak memory (the
GPU's max_memory_allocated, or the process's peak RSS on CPU). Sizes stop when a stride would exceed
--max-stride-s (judged from the previous size) or memory runs out; the reason is recorded.
A benchmark, not a test: it asserts nothing, it reports.
"""
import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from actionmd.ase import ActionVerlet
from actionmd.examples import ne_xe_crystal

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "lj-mixture" / "lj-mixture-20fs.pt"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)  # the GPU asked for, not the current one


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def measure(cells: int, strides: int, device: str, model: Path) -> dict:
    atoms = ne_xe_crystal(repeat=cells, temperature_K=100.0, seed=cells)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    dynamics = ActionVerlet(atoms, str(model), device=device)
    dynamics.run(2)  # warm-up
    warm = dynamics.solver_summary()
    synchronize(device)
    start = time.perf_counter()
    dynamics.run(strides)
    synchronize(device)
    wall = time.perf_counter() - start
    total = dynamics.solver_summary()
    timed = total["steps"] - warm["steps"]
    iterations = (total["mean_iterations"] * total["steps"] - warm["mean_iterations"] * warm["steps"]) / timed
    evaluations = (total["mean_evaluations"] * total["steps"] - warm["mean_evaluations"] * warm["steps"]) / timed
    n = len(atoms)
    return {"cells": cells, "atoms": n, "strides": timed, "s_per_stride": wall / timed,
            "atom_steps_per_s": n * timed / wall, "iterations_per_stride": iterations,
            "evaluations_per_stride": evaluations, "evaluation_atoms_per_s": n * evaluations * timed / wall,
            "peak_memory_gb": peak_memory_gb(device)}


def machine(device: str) -> dict:
    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "actionmd": metadata.version("actionmd")}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=None,
                        help="fcc cells per direction, 4 x cells^3 atoms (default: up to 1e6 atoms on a GPU, "
                             "27,436 on CPU)")
    parser.add_argument("--strides", type=int, default=5, help="timed strides per size (after 2 warm-up strides)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--max-stride-s", type=float, default=60.0,
                        help="skip the remaining sizes once a stride would take longer than this")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # one size, in this process: a JSON line
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA device; use --device cpu")
    if args.single is not None:
        try:
            print(json.dumps(measure(args.single, args.strides, args.device, args.model)))
        except torch.cuda.OutOfMemoryError as err:
            print(json.dumps({"error": f"out of GPU memory ({str(err).splitlines()[0]})"}))
        return
    gpu = args.device.startswith("cuda")
    cells = args.cells or ([3, 6, 12, 19, 30, 40, 50, 63] if gpu else [3, 6, 12, 19])
    out = args.out or ROOT / "bench" / "results" / f"throughput_{'gpu' if gpu else 'cpu'}.json"
    rows, stopped = [], None
    for c in sorted(cells):
        if rows:
            projected = rows[-1]["s_per_stride"] * (c / rows[-1]["cells"]) ** 3
            if projected > args.max_stride_s:
                stopped = f"{4 * c ** 3} atoms: a stride would take ~{projected:.0f} s > --max-stride-s"
                break
        run = subprocess.run([sys.executable, __file__, "--single", str(c), "--strides", str(args.strides),
                              "--device", args.device, "--model", str(args.model)], capture_output=True, text=True)
        lines = run.stdout.strip().splitlines()
        row = json.loads(lines[-1]) if run.returncode == 0 and lines else \
            {"error": f"exit status {run.returncode} (killed for memory?): {run.stderr.strip()[-300:]}"}
        if "error" in row:
            stopped = f"{4 * c ** 3} atoms: {row['error']}"
            break
        rows.append(row)
        print(f"{row['atoms']:>9} atoms  {row['s_per_stride']:8.3f} s/stride  {row['atom_steps_per_s']:10.3g} "
              f"atom-steps/s  {row['iterations_per_stride']:.2f} iterations  {row['peak_memory_gb']:.2f} GB",
              flush=True)
    result = {"benchmark": "bench/throughput.py", "device": args.device, "machine": machine(args.device),
              "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rows": rows, "stopped": stopped}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    if stopped:
        print(f"stopped at {stopped}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
