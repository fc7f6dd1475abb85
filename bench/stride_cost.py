"""Where a stride's time goes, and the speed-up over the same-backbone ML potential that this allows.

    python bench/stride_cost.py MODEL DATA [--segment -1] [--strides 20] [--out bench/results/stride_cost_X.json]

From one held-out state, with the model file loaded as the integrators load it (TorchScript, weights
frozen, on the CPU), times per call (median of rounds):
- t_action: the action with dS/dq and dS/dp, one evaluation of the solver;
- t_potential: the action network's potential term with its forces, one step of the same-backbone ML
  potential that a user would run with velocity Verlet at the reference dt;
- t_predictor: the direct predictor, the solver's first guess;
and, from the ASE integrator's own strides, the solver's evaluations per stride and the wall time of a
stride. Counting model calls only, the speed-up over that ML potential is

    (stride / dt) * t_potential / (t_predictor + evaluations * t_action)

(the integrators' own work moves both sides a little): at 20x, 10x would need the predictor and every
solver evaluation together to cost no more than two potential calls.
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from actionmd.action_map import ActionMap
from actionmd.allocator import keep_large_buffers
from actionmd.model_file import load_model
from actionmd.units import momenta_ase_to_model
from side_by_side import start_state


def per_call_ms(call, rounds: int, calls: int) -> float:
    """Median over rounds of the mean time of ``calls`` calls, after TorchScript's warm-up calls."""
    for _ in range(6):  # the profiling executor specialises over the first calls
        call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path, help="held-out dataset (.h5) holding the starting state")
    parser.add_argument("--segment", type=int, default=-1)
    parser.add_argument("--strides", type=int, default=20, help="ASE strides timed for evaluations per stride")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    loaded = load_model(args.model, device="cpu")
    meta, module, dtype = loaded.metadata, loaded.module, loaded.metadata.torch_dtype
    if not (meta.has_predictor and hasattr(module, "action")):
        parser.error(f"{args.model}: needs a learned model with a predictor (made by `actionmd train`)")
    _, state = start_state(args.data, args.segment)
    action_map = ActionMap(loaded)
    keep_large_buffers(len(state["positions"]))  # as the integrators and the ML-potential calculator do
    types = action_map.types_of(state["numbers"], state["masses"])
    q, p, cell = state["positions"], state["momenta"], state["cell"]

    strides = []
    for _ in range(3 + args.strides):  # 3 warm-up strides
        start = time.perf_counter()
        q, p, report = action_map.step(q, p, types, cell, (True, True, True))
        strides.append((time.perf_counter() - start, report.evaluations))
    strides = strides[3:]

    action_map.neighbors.update(q, cell, (True, True, True))
    edges, shifts = action_map.neighbors.edge_index, action_map.neighbors.edge_shifts(dtype)
    q0, p0 = torch.tensor(q, dtype=dtype), torch.tensor(p, dtype=dtype)

    def action():
        qbar, pbar = q0.clone().requires_grad_(True), p0.clone().requires_grad_(True)
        torch.autograd.grad(module(qbar, pbar, types, edges, shifts).sum(), (qbar, pbar))

    def potential():
        positions = q0.clone().requires_grad_(True)
        torch.autograd.grad(module.action.potential_energy_per_atom(positions, types, edges, shifts).sum(), positions)

    def predictor():
        with torch.enable_grad():  # as ActionMap calls it
            module.predict(q0, p0, types, edges, shifts)

    calls = max(3, int(2000 / len(q0)))
    t_action, t_potential, t_predictor = (per_call_ms(f, args.rounds, calls) for f in (action, potential, predictor))
    evaluations = statistics.mean(e for _, e in strides)
    stride_ms = statistics.median(t for t, _ in strides) * 1e3
    steps_per_stride = meta.stride / state["dt_fs"]
    result = {
        "model": str(args.model), "atoms": len(q0), "edges_in_list": int(edges.shape[1]), "dtype": meta.dtype,
        "stride_fs": meta.stride, "reference_dt_fs": state["dt_fs"], "torch_threads": torch.get_num_threads(),
        "ms_action_with_gradients": t_action, "ms_potential_with_forces": t_potential, "ms_predictor": t_predictor,
        "evaluations_per_stride": evaluations, "ms_per_stride_ase": stride_ms,
        "action_over_potential": t_action / t_potential, "predictor_over_potential": t_predictor / t_potential,
        "speedup_in_model_calls_vs_same_backbone": steps_per_stride * t_potential / (t_predictor + evaluations * t_action),
        "speedup_ase_stride_vs_potential_calls": steps_per_stride * t_potential / stride_ms,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
