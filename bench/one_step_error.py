"""One-step error of a model against reference pairs: the solved action map, the predictor alone, and
free flight, as RMSE of dq (Å) and dp (u·Å/fs).

    python bench/one_step_error.py MODEL DATA.h5 [--pairs 40] [--out bench/results/one_step_NAME.json]

Pairs start in the dataset's last two segments (the validation side of a 0.25 split by segment is not
guaranteed to be these; use a dataset generated with another seed for a strictly held-out figure).
"""
import argparse
import json
from pathlib import Path

import numpy as np
from actionmd.action_map import ActionMap
from actionmd.data import load_dataset
from actionmd.model_file import load_model
from actionmd.solver import SolverOptions
from actionmd.training.dataset import frames_from_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--out", default=None)
    parser.add_argument("--method", default="anderson", choices=["anderson", "newton"], help="solver of the action map")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    stride = model.metadata.stride
    trajectories = frames_from_dataset(load_dataset(args.data), stride, every=10)[-2:]
    frames = [f for t in trajectories for f in t][: args.pairs]
    errors = {"action": [], "predictor": [], "free_flight": []}
    for mode in ("action", "predictor"):
        action_map = ActionMap(model, mode=mode, solver=SolverOptions(method=args.method))
        for frame in frames:
            types = action_map.types_of(frame.numbers)
            q, p, _ = action_map.step(frame.positions, frame.momenta, types, frame.cell, frame.pbc)
            errors[mode].append((q - frame.next_positions, p - frame.next_momenta))
    mass_of = dict(zip(model.metadata.species, model.metadata.masses))
    for frame in frames:
        m = np.array([mass_of[int(z)] for z in frame.numbers])[:, None]
        errors["free_flight"].append((frame.positions + stride * frame.momenta / m - frame.next_positions,
                                      frame.momenta - frame.next_momenta))
    result = {"model": args.model, "stride_fs": stride, "pairs": len(frames), "method": args.method}
    for name, pairs in errors.items():
        dq = np.concatenate([e[0] for e in pairs])
        dp = np.concatenate([e[1] for e in pairs])
        result[name] = {"rmse_dq_A": float(np.sqrt((dq**2).mean())), "rmse_dp_uA_per_fs": float(np.sqrt((dp**2).mean()))}
    print(json.dumps(result, indent=1))
    out = Path(args.out or f"bench/results/one_step_{Path(args.model).stem}.json")
    out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
