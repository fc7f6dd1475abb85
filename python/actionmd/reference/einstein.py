"""The exact action of independent harmonic oscillators (an Einstein crystal), with an exact ``predict``.

Each atom i is tied to its own site s_i with the frequency w of its species:
    H_i = |p_i|^2 / 2m + m w^2 |q_i - s_i|^2 / 2,     S_i = (2/w) tan(w dt / 2) H_i.
The midpoint map of this S is the exact flow at any stride below half a period (w dt < pi), including
w dt > 2 where velocity Verlet is unstable. Sites are tied to atom indices, so the action is meant for
engines that keep atoms in a fixed order with unwrapped positions (ASE does both).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn


class EinsteinAction(nn.Module):
    """Exact action of atoms on springs to fixed sites; frequencies per species in rad/fs."""

    def __init__(self, sites: torch.Tensor, omegas: torch.Tensor, masses: torch.Tensor, stride: float):
        super().__init__()
        worst = float(omegas.max()) * stride
        if worst >= math.pi:
            raise ValueError(f"the exact harmonic action is singular at w*dt = pi; got w*dt = {worst:.3f}: "
                             "use a stride below half the shortest period")
        self.register_buffer("sites", sites)
        self.register_buffer("omegas", omegas)
        self.register_buffer("masses", masses)
        self.register_buffer("coefficients", 2.0 / omegas * torch.tan(0.5 * omegas * stride))
        self.stride = float(stride)

    def _check(self, positions: torch.Tensor):
        if positions.shape[0] != self.sites.shape[0]:
            raise RuntimeError("this Einstein action has one site per atom: expected "
                               + str(self.sites.shape[0]) + " atoms, got " + str(positions.shape[0]))

    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> torch.Tensor:
        self._check(positions)
        m, w = self.masses[types], self.omegas[types]
        x = positions - self.sites
        energy = (momenta * momenta).sum(1) / (2.0 * m) + 0.5 * m * w * w * (x * x).sum(1)
        return self.coefficients[types] * energy

    @torch.jit.export
    def predict(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The exact flow over one stride."""
        self._check(positions)
        m, w = self.masses[types].unsqueeze(1), self.omegas[types].unsqueeze(1)
        x = positions - self.sites
        c, s = torch.cos(w * self.stride), torch.sin(w * self.stride)
        x_new = x * c + momenta / (m * w) * s
        p_new = momenta * c - m * w * x * s
        return x_new - x, p_new - momenta
