"""Implicit-midpoint actions S = stride * H for pair potentials (no training).

H = sum_i |p_i|^2 / 2 m_i + sum_{i<j} s(r_ij) phi(r_ij), with a C2 switch s that takes each pair
smoothly to zero at the cutoff (the contract requires it). Potential parameters are given in eV and Å.
Each module is TorchScript-ready; ``potential_energy`` (eV) is exported too, so the same file serves
as an ASE calculator for checking energy conservation.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..units import EV


def pair_table(value, n_species: int, mixing: str, name: str) -> torch.Tensor:
    """Per-type-pair parameter matrix from a scalar, per-species values (mixed) or an explicit matrix."""
    table = torch.as_tensor(value, dtype=torch.float64)
    if table.ndim == 0:
        return table.expand(n_species, n_species).clone()
    if table.shape == (n_species,):
        if mixing == "arithmetic":
            return 0.5 * (table[:, None] + table[None, :])
        return torch.sqrt(table[:, None] * table[None, :])
    if table.shape == (n_species, n_species):
        if not torch.allclose(table, table.T):
            raise ValueError(f"{name}: a per-pair matrix must be symmetric, got {table.tolist()}")
        return table
    raise ValueError(f"{name}: give a scalar, one value per species ({n_species}) or a "
                     f"{n_species}x{n_species} matrix; got shape {tuple(table.shape)}")


class LennardJones(nn.Module):
    """phi = 4 eps ((sigma/r)^12 - (sigma/r)^6); eps in eV, sigma in Å."""

    def __init__(self, epsilon: torch.Tensor, sigma: torch.Tensor):
        super().__init__()
        self.register_buffer("epsilon", epsilon)
        self.register_buffer("sigma", sigma)

    def forward(self, r: torch.Tensor, type_i: torch.Tensor, type_j: torch.Tensor) -> torch.Tensor:
        x6 = (self.sigma[type_i, type_j] / r) ** 6
        return 4.0 * self.epsilon[type_i, type_j] * (x6 * x6 - x6)


class Morse(nn.Module):
    """phi = D (exp(-2 a (r - r0)) - 2 exp(-a (r - r0))); D in eV, a in 1/Å, r0 in Å."""

    def __init__(self, depth: torch.Tensor, alpha: torch.Tensor, r0: torch.Tensor):
        super().__init__()
        self.register_buffer("depth", depth)
        self.register_buffer("alpha", alpha)
        self.register_buffer("r0", r0)

    def forward(self, r: torch.Tensor, type_i: torch.Tensor, type_j: torch.Tensor) -> torch.Tensor:
        e = torch.exp(-self.alpha[type_i, type_j] * (r - self.r0[type_i, type_j]))
        return self.depth[type_i, type_j] * (e * e - 2.0 * e)


class HarmonicPair(nn.Module):
    """phi = k/2 (r - r0)^2 for every pair inside the cutoff; k in eV/Å², r0 in Å."""

    def __init__(self, k: torch.Tensor, r0: torch.Tensor):
        super().__init__()
        self.register_buffer("k", k)
        self.register_buffer("r0", r0)

    def forward(self, r: torch.Tensor, type_i: torch.Tensor, type_j: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k[type_i, type_j] * (r - self.r0[type_i, type_j]) ** 2


class MidpointPairAction(nn.Module):
    """S = stride * H for a switched pair potential; optional velocity-Verlet ``predict``."""

    def __init__(self, potential: nn.Module, masses: torch.Tensor, stride: float, cutoff: float,
                 switch_start: float):
        super().__init__()
        if not 0 <= switch_start < cutoff:
            raise ValueError(f"switch_start must lie in [0, cutoff={cutoff}) Å, got {switch_start}")
        self.potential = potential
        self.register_buffer("masses", masses)
        self.stride = float(stride)
        self.cutoff = float(cutoff)
        self.switch_start = float(switch_start)
        self.ev = float(EV)  # eV in model energy units (TorchScript cannot read module globals)

    def _switch(self, r: torch.Tensor) -> torch.Tensor:
        x = ((r - self.switch_start) / (self.cutoff - self.switch_start)).clamp(0.0, 1.0)
        return 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)

    def _pair_energies(self, positions: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                       edge_shifts: torch.Tensor) -> torch.Tensor:
        """Per-atom potential energy in eV (half of each edge's pair energy)."""
        i, j = edge_index[0], edge_index[1]
        r = torch.linalg.vector_norm(positions[j] - positions[i] + edge_shifts, dim=1)
        inside = r < self.cutoff
        r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
        phi = torch.where(inside, self.potential(r_safe, types[i], types[j]) * self._switch(r_safe),
                          torch.zeros_like(r))
        return torch.zeros(positions.shape[0], dtype=positions.dtype, device=positions.device) \
            .index_add(0, i, 0.5 * phi)

    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> torch.Tensor:
        kinetic = (momenta * momenta).sum(dim=1) / (2.0 * self.masses[types])
        potential = self.ev * self._pair_energies(positions, types, edge_index, edge_shifts)
        return self.stride * (kinetic + potential)

    @torch.jit.export
    def potential_energy(self, positions: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                         edge_shifts: torch.Tensor) -> torch.Tensor:
        """Total potential energy in eV."""
        return self._pair_energies(positions, types, edge_index, edge_shifts).sum()

    def _forces(self, positions: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                edge_shifts: torch.Tensor) -> torch.Tensor:
        """Forces in model units (u·Å/fs²)."""
        x = positions.detach().requires_grad_(True)
        energy = self.ev * self._pair_energies(x, types, edge_index, edge_shifts).sum()
        grad = torch.autograd.grad([energy], [x])[0]
        if grad is None:
            return torch.zeros_like(positions)
        return -grad

    def velocity_verlet_step(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                             edge_index: torch.Tensor, edge_shifts: torch.Tensor
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One velocity-Verlet stride (a cheap, explicit guess for the implicit map)."""
        inverse_mass = (1.0 / self.masses[types]).unsqueeze(1)
        half = momenta + 0.5 * self.stride * self._forces(positions, types, edge_index, edge_shifts)
        delta_q = self.stride * half * inverse_mass
        end = half + 0.5 * self.stride * self._forces(positions + delta_q, types, edge_index, edge_shifts)
        return delta_q, end - momenta


class MidpointPairActionWithPredictor(MidpointPairAction):
    """The same action with a velocity-Verlet ``predict`` for the solver's initial guess."""

    @torch.jit.export
    def predict(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.velocity_verlet_step(positions, momenta, types, edge_index, edge_shifts)
