"""Validation beyond one-step errors: a short rollout of the trained model with the real solver.

Reports what one-step losses cannot show: iterations per step, the worst residual, per-species
temperatures along the run (equipartition), whether the solve ever failed, and, given the reference
potential, the drift of the total energy under it (the map conserves its own shadow energy, not
necessarily the true one: a model can look good step by step and still heat the system).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np
import torch
from ase.data import chemical_symbols

from ..action_map import ActionMap
from ..data.config import ConfigError
from ..data.lammps_run import LammpsError
from ..evaluation.energy import energy_summary, kinetic_energy
from ..evaluation.thermal import block_stderr
from ..evaluation.trajectory import EvaluationError, Trajectory
from ..model_file import DTYPES, LoadedModel, parse_metadata
from ..observables import temperature_per_species
from ..solver import SolverConvergenceError, SolverOptions
from .batch import Frame

# frames of a rollout -> potential energy (eV) of each under the reference potential
ReferenceEnergy = Callable[[Trajectory], np.ndarray]


def rollout_check(model: torch.nn.Module, metadata: dict, start: Frame, steps: int,
                  reference_energy: ReferenceEnergy | None = None, dtype: str | None = None,
                  solver: SolverOptions | None = None) -> dict:
    """Run ``steps`` strides from ``start`` with the action map; summarise the solver, the temperatures
    and (with ``reference_energy``) the energy drift under the reference potential.

    ``dtype`` and ``solver`` let the rollout run the model as it will be used: a float32-trained model of a
    stiff system (flexible water) is exported in float64 and solved to a tolerance float32 cannot reach."""
    if dtype is not None:
        model, metadata = model.to(DTYPES[dtype]), {**metadata, "dtype": dtype}
    scripted = torch.jit.script(model.cpu())
    loaded = LoadedModel(scripted, parse_metadata({"format": "actionmd", "format_version": 1, **metadata}),
                         "<training>", torch.device("cpu"))
    action_map = ActionMap(loaded, solver=solver)
    types = action_map.types_of(start.numbers)
    masses = np.asarray(metadata["masses"])[types.numpy()]
    q, p = start.positions, start.momenta
    states, iterations, evaluations, residuals, temperatures = [(q, p)], [], [], [], []
    failed_at = None
    for step in range(steps):
        try:
            q, p, report = action_map.step(q, p, types, start.cell, start.pbc)
        except SolverConvergenceError:
            failed_at = step
            break
        states.append((q, p))
        iterations.append(report.iterations)
        evaluations.append(report.evaluations)
        residuals.append(report.residual)
        temperatures.append(temperature_per_species(start.numbers, masses, p))
    species = sorted(temperatures[0]) if temperatures else []
    series = {chemical_symbols[z]: np.array([t[z] for t in temperatures]) for z in species}
    summary = {"steps": len(iterations), "stride_fs": float(metadata["stride"]), "failed_at": failed_at,
               "dtype": metadata["dtype"], "solver": asdict(action_map.solver),
               "mean_iterations": float(np.mean(iterations)) if iterations else None,
               "mean_evaluations": float(np.mean(evaluations)) if evaluations else None,
               "max_residual": float(np.max(residuals)) if residuals else None,
               "mean_temperature_K": {s: float(t.mean()) for s, t in series.items()},
               "temperature_stderr_K": {s: block_stderr(t) for s, t in series.items()}}
    if reference_energy is not None and len(states) > 2:
        try:
            summary["energy"] = _energy(states, start, masses, float(metadata["stride"]), reference_energy)
        except (EvaluationError, LammpsError, ConfigError) as err:  # the trained model is saved: report, go on
            summary["energy"] = {"error": str(err)}
    return summary


def _energy(states, start: Frame, masses: np.ndarray, stride_fs: float, reference_energy: ReferenceEnergy) -> dict:
    """Drift (meV/atom/ps) and fluctuation of E = V_ref(q) + sum p^2/2m along the rollout."""
    positions = np.stack([q for q, _ in states])
    velocities = np.stack([p for _, p in states]) / masses[None, :, None]
    trajectory = Trajectory(numbers=start.numbers, masses=masses, positions=positions,
                            cells=np.repeat(start.cell[None], len(states), axis=0), interval_fs=stride_fs,
                            velocities=velocities, pbc=np.asarray(start.pbc), unwrapped=True,
                            source="training rollout")
    total = reference_energy(trajectory) + kinetic_energy(trajectory)
    times = np.arange(len(states)) * stride_fs
    summary = energy_summary(times, total, len(start.numbers))
    return {k: float(summary[k]) for k in ("drift_meV_per_atom_ps", "drift_stderr_meV_per_atom_ps",
                                           "fluctuation_meV_per_atom", "max_deviation_meV_per_atom")}
