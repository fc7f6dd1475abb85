"""Validation beyond one-step errors: a short rollout of the trained model with the real solver.

Reports what one-step losses cannot show: iterations per step, the worst residual, per-species
temperatures along the run (equipartition), and whether the solve ever failed.
"""
from __future__ import annotations

import numpy as np
import torch

from ..action_map import ActionMap
from ..model_file import LoadedModel, parse_metadata
from ..observables import temperature_per_species
from ..solver import SolverConvergenceError
from .batch import Frame


def rollout_check(model: torch.nn.Module, metadata: dict, start: Frame, steps: int) -> dict:
    """Run ``steps`` strides from ``start`` with the action map; summarise the solver and temperatures."""
    scripted = torch.jit.script(model.cpu())
    loaded = LoadedModel(scripted, parse_metadata({"format": "actionmd", "format_version": 1, **metadata}),
                         "<training>", torch.device("cpu"))
    action_map = ActionMap(loaded)
    types = action_map.types_of(start.numbers)
    masses = np.asarray(metadata["masses"])[types.numpy()]
    q, p = start.positions, start.momenta
    iterations, residuals, temperatures = [], [], []
    failed_at = None
    for step in range(steps):
        try:
            q, p, report = action_map.step(q, p, types, start.cell, start.pbc)
        except SolverConvergenceError:
            failed_at = step
            break
        iterations.append(report.iterations)
        residuals.append(report.residual)
        temperatures.append(temperature_per_species(start.numbers, masses, p))
    species = sorted(temperatures[0]) if temperatures else []
    return {"steps": len(iterations), "failed_at": failed_at,
            "mean_iterations": float(np.mean(iterations)) if iterations else None,
            "max_residual": float(np.max(residuals)) if residuals else None,
            "mean_temperature_K": {str(z): float(np.mean([t[z] for t in temperatures])) for z in species}}
