"""Forward + gradient throughput of the learned action (atoms/s): one evaluation of the map's G(x).

    python bench/model_throughput.py [--atoms 4000] [--device cpu] [--out bench/results/model_throughput.json]

Ne–Xe crystal, cutoff 5 Å (+ no skin), untrained ActionNet weights (the cost does not depend on them),
exported and loaded as a model file, as the integrators use it (weights frozen).
"""
import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actionmd.examples import ne_xe_crystal
from actionmd.model_file import export_model, load_model
from actionmd.models import build_learned_model
from actionmd.neighbors import VerletList


def measure(n_cells, features, layers, dtype, device, repeats=10):
    atoms = ne_xe_crystal(repeat=n_cells, temperature_K=100)
    module, metadata = build_learned_model(["Ne", "Xe"], stride=10.0, cutoff=5.0, features=features, layers=layers,
                                           predictor=False, dtype=dtype)
    with tempfile.TemporaryDirectory() as work:  # through a model file, as the integrators load it
        export_model(module, Path(work) / "model.pt", metadata)
        module = load_model(Path(work) / "model.pt", device=device).module
    neighbors = VerletList(5.0, skin=1e-9, device=device)
    neighbors.update(atoms.positions, atoms.cell.array, atoms.pbc)
    torch_dtype = getattr(torch, dtype)
    q = torch.tensor(atoms.positions, dtype=torch_dtype, device=device, requires_grad=True)
    p = torch.tensor(atoms.get_momenta(), dtype=torch_dtype, device=device, requires_grad=True)
    types = torch.tensor((atoms.numbers == 54).astype(np.int64), device=device)
    shifts = neighbors.edge_shifts(torch_dtype)

    def once():
        action = module(q, p, types, neighbors.edge_index, shifts).sum()
        torch.autograd.grad(action, (q, p))

    for _ in range(6):  # TorchScript's profiling executor specialises over the first calls
        once()
    if device.startswith("cuda"):  # cuda:N too
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if device.startswith("cuda"):  # cuda:N too
        torch.cuda.synchronize(device)
    elapsed = (time.perf_counter() - start) / repeats
    return {"atoms": len(atoms), "edges": int(neighbors.edge_index.shape[1]), "features": features, "layers": layers,
            "dtype": dtype, "device": device, "ms_per_evaluation": 1e3 * elapsed, "atoms_per_s": len(atoms) / elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10, help="fcc cells per side (4 atoms each)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench/results/model_throughput.json")
    args = parser.parse_args()
    results = []
    for dtype in ("float32", "float64"):
        for features, layers in ((32, 1), (32, 2), (64, 2)):
            row = measure(args.cells, features, layers, dtype, args.device)
            print(json.dumps(row))
            results.append(row)
    machine = {"cpu": platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
