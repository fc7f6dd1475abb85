"""ASE time per step and solver iterations per step for 1000 Lennard-Jones atoms (Ne–Xe fcc, 60 K).

    python bench/ase_lj_step.py [--steps 30] [--out bench/results/ase_lj_step.json]

Runs ActionVerlet with the implicit-midpoint reference action at float64 and float32, for each solver
method and two strides, after a few warm-up steps. Records the machine with the figures.
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from actionmd.ase import ActionVerlet
from actionmd.examples import NE_XE, ne_xe_crystal
from actionmd.model_file import export_model
from actionmd.reference import lennard_jones

def system():
    return ne_xe_crystal(repeat=(5, 5, 10), temperature_K=60.0)  # 1000 atoms


def measure(model, method, steps, warmup=3):
    atoms = system()
    dyn = ActionVerlet(atoms, model, method=method)
    dyn.run(warmup)
    dyn.iterations.clear()
    start = time.perf_counter()
    dyn.run(steps)
    elapsed = (time.perf_counter() - start) / steps
    summary = dyn.solver_summary()
    return {"ms_per_step": 1e3 * elapsed, "mean_iterations": summary["mean_iterations"],
            "max_iterations": summary["max_iterations"], "atoms": len(atoms)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="bench/results/ase_lj_step.json")
    args = parser.parse_args()
    results = []
    workdir = Path(tempfile.mkdtemp())
    for stride in (8.0, 32.0):
        for dtype in ("float64", "float32"):
            path = workdir / f"lj-{stride:g}-{dtype}.pt"
            module, metadata = lennard_jones(**NE_XE, cutoff=8.0, stride=stride, dtype=dtype)
            export_model(module, path, metadata)
            for method in ("anderson", "newton"):
                row = {"stride_fs": stride, "dtype": dtype, "method": method, **measure(str(path), method, args.steps)}
                print(json.dumps(row))
                results.append(row)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
