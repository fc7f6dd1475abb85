"""Losses at the true midpoint: no implicit solve is needed to train the action.

With dq = q' - q and dp = p' - p from the reference, the map is exact for the pair when
    dq = dS/dpbar(qbar, pbar)   and   dp = -dS/dqbar(qbar, pbar),
so the action loss is the mean squared violation, in mass-scaled units (Å²): a momentum error counts as
the displacement it causes over one stride, |r_p| * stride / m, as in the solver's tolerance.
"""
from __future__ import annotations

import torch

from ..units import EV
from .batch import Batch


def mass_scaled_mse(residual_q: torch.Tensor, residual_p: torch.Tensor, masses: torch.Tensor,
                    stride: float) -> torch.Tensor:
    scale = (stride / masses).unsqueeze(1)
    return 0.5 * ((residual_q**2).mean() + ((residual_p * scale) ** 2).mean())


def action_loss(model, batch: Batch, stride: float, create_graph: bool = True) -> torch.Tensor:
    qbar = batch.qbar.detach().requires_grad_(True)
    pbar = batch.pbar.detach().requires_grad_(True)
    action = model(qbar, pbar, batch.types, batch.edge_index, batch.edge_shifts).sum()
    gq, gp = torch.autograd.grad(action, (qbar, pbar), create_graph=create_graph)
    return mass_scaled_mse(batch.dq - gp, batch.dp + gq, batch.masses, stride)


def predictor_loss(model, batch: Batch, stride: float) -> torch.Tensor:
    delta_q, delta_p = model.predict(batch.q, batch.p, batch.types, batch.start_edge_index, batch.start_edge_shifts)
    return mass_scaled_mse(batch.dq - delta_q, batch.dp - delta_p, batch.masses, stride)


def force_loss(potential_per_atom, batch: Batch, stride: float, create_graph: bool = True) -> torch.Tensor:
    """Pretraining of the potential-like term on reference forces, in the same mass-scaled units
    (a force error counts as the displacement it causes in one stride, stride^2 F / m)."""
    if batch.forces is None:
        raise ValueError("force pretraining needs reference forces in the dataset")
    q = batch.q.detach().requires_grad_(True)
    energy = potential_per_atom(q, batch.types, batch.start_edge_index, batch.start_edge_shifts).sum()
    (gradient,) = torch.autograd.grad(energy, q, create_graph=create_graph)
    residual = (batch.forces * EV + gradient) * (stride**2 / batch.masses).unsqueeze(1)
    return (residual**2).mean()


def baselines(batches, stride: float) -> torch.Tensor:
    """Each loss of the free-flight, zero-potential baseline on these batches: [action, predictor, force].

    The trainer divides by them, so every logged loss reads as a fraction of that baseline (1 = no
    better than free flight) and the optimiser sees O(1) numbers whatever the units and stride.
    """
    totals = torch.zeros(3, dtype=torch.float64)
    for batch in batches:
        free_dq = stride * batch.p / batch.masses.unsqueeze(1)
        motion = mass_scaled_mse(batch.dq - free_dq, batch.dp, batch.masses, stride)
        totals[0] += float(motion)
        totals[1] += float(motion)
        if batch.forces is not None:
            totals[2] += float(((batch.forces * EV * (stride**2 / batch.masses).unsqueeze(1)) ** 2).mean())
    totals /= max(len(batches), 1)
    if not totals[0] > 0:
        raise ValueError("the reference pairs are exactly free flight (no forces?): nothing to learn")
    return totals.clamp(min=1e-300)
