"""The learned action S_theta(qbar, pbar) and the direct predictor, per the model-file contract.

    S = stride * sum_i [ |p_i|^2 / 2 m_i  +  V_i(q)  +  K_i(q, p) ]

- V_i: an invariant message-passing energy (pretrainable on reference forces);
- K_i: a learned quadratic form in the mass-weighted momenta v = p / sqrt(m), built only from even
  products (v_i·v_j, (v_i·u)(v_j·u), (v_i·u)^2 along each bond u), the form of the leading correction
  to the midpoint action. Every K term rides on an edge with the cutoff envelope, so an isolated atom is
  an exact free particle, and S is exactly even in p (time-reversible map).
Distances enter only as r_ij, so S is translation invariant and the map conserves total momentum.

The predictor returns (delta_q, delta_p) equivariantly; delta_p is a sum of pair terms that are
antisymmetric under i <-> j, so it conserves total momentum exactly.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .layers import Encoder, gather, mlp


def _zero_last(module: nn.Sequential) -> nn.Sequential:
    """Start a head at zero output, so an untrained model is the free-flight/midpoint baseline."""
    last = [m for m in module if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return module


class ActionNet(nn.Module):
    """S_theta(qbar, pbar) as per-atom contributions (u·Å²/fs)."""

    def __init__(self, masses: torch.Tensor, stride: float, cutoff: float, features: int = 32, layers: int = 2,
                 radial_size: int = 8, energy_scale: float = 1.0, angular: bool = False):
        super().__init__()
        n_species = masses.shape[0]
        self.encoder = Encoder(n_species, features, layers, cutoff, radial_size, angular)
        self.potential_head = mlp([features, features, 1])
        self.momentum_head = _zero_last(mlp([2 * features + radial_size, features, 3]))
        self.register_buffer("masses", masses)
        self.stride = float(stride)
        self.energy_scale = float(energy_scale)  # u·Å²/fs² per unit of the potential head

    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> torch.Tensor:
        return self.owned(positions, momenta, types, edge_index, edge_shifts, positions.shape[0])

    def owned(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
              edge_index: torch.Tensor, edge_shifts: torch.Tensor, n_owned: int) -> torch.Tensor:
        """The contributions of the first n_owned atoms, computing only what they depend on."""
        n = _check_owned(n_owned, positions)
        if n < positions.shape[0]:
            atoms, edge_index, edge_shifts = self.encoder.subgraph(positions, edge_index, edge_shifts, n)
            positions, momenta, types = gather(positions, atoms), gather(momenta, atoms), gather(types, atoms)
        h, i, j, unit, weight, radial = self.encoder(positions, types, edge_index, edge_shifts, n)
        if n < positions.shape[0]:
            i, j, unit, weight, radial = _edges_centred_below(n, i, j, unit, weight, radial)
        masses = self.masses[types]
        kinetic = (momenta[:n] * momenta[:n]).sum(1) / (2.0 * masses[:n])
        potential = self.energy_scale * self.potential_head(h[:n]).squeeze(-1)
        v = momenta / masses.sqrt().unsqueeze(1)
        vi, vj = gather(v, i), gather(v, j)
        vi_u, vj_u = (vi * unit).sum(1), (vj * unit).sum(1)
        invariants = torch.stack([(vi * vj).sum(1), vi_u * vj_u, vi_u * vi_u], dim=1)
        coefficients = self._momentum_coefficients(h, types, i, j, radial)
        pair = weight * (coefficients * invariants).sum(1)
        correction = torch.zeros_like(kinetic).index_add(0, i, pair)
        return self.stride * (kinetic + potential + correction)

    def _momentum_coefficients(self, h: torch.Tensor, types: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                               radial: torch.Tensor) -> torch.Tensor:
        """momentum_head([h_i, embedding(s_j), radial_ij]), its first Linear split into a per-atom, a
        per-species and a radial part, so only the narrow radial part is multiplied per edge."""
        first = self.momentum_head[0]
        f = h.shape[1]
        from_i = torch.nn.functional.linear(h, first.weight[:, :f], first.bias)
        from_j = torch.nn.functional.linear(self.encoder.embedding.weight, first.weight[:, f:2 * f])
        n_species = from_j.shape[0]
        # one gather from an (atom, neighbour species) table instead of two gathers and their sum per edge
        table = (from_i.unsqueeze(1) + from_j.unsqueeze(0)).reshape(-1, f)
        from_radial = torch.nn.functional.linear(radial, first.weight[:, 2 * f:])
        hidden = gather(table, i * n_species + gather(types, j)) + from_radial
        return self.momentum_head[2](self.momentum_head[1](hidden))

    @torch.jit.export
    def potential_energy_per_atom(self, positions: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                                  edge_shifts: torch.Tensor) -> torch.Tensor:
        """V_i (u·Å²/fs²): the potential-like part, pretrained on reference forces."""
        h = self.encoder(positions, types, edge_index, edge_shifts)[0]
        return self.energy_scale * self.potential_head(h).squeeze(-1)


class Predictor(nn.Module):
    """Direct, equivariant prediction of (delta_q, delta_p) over one stride from (q, p)."""

    def __init__(self, masses: torch.Tensor, stride: float, cutoff: float, features: int = 32, layers: int = 2,
                 radial_size: int = 8, momentum_scale: float = 1.0, length_scale: float = 0.1,
                 velocity_scale: float = 0.01, angular: bool = False):
        super().__init__()
        n_species = masses.shape[0]
        self.encoder = Encoder(n_species, features, layers, cutoff, radial_size, angular)
        # symmetric pair features -> momentum transfer (force-like f along u, drag-like g on v_j - v_i)
        self.transfer_head = _zero_last(mlp([2 * features + radial_size + 4, features, 2]))
        # per-edge position corrections (need not be symmetric)
        self.position_head = _zero_last(mlp([2 * features + radial_size + 4, features, 2]))
        self.register_buffer("masses", masses)
        self.stride = float(stride)
        self.momentum_scale = float(momentum_scale)
        self.length_scale = float(length_scale)
        self.velocity_scale = float(velocity_scale)  # Å/fs: thermal speeds, to keep invariants of order one

    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.owned(positions, momenta, types, edge_index, edge_shifts, positions.shape[0])

    def owned(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
              edge_index: torch.Tensor, edge_shifts: torch.Tensor, n_owned: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The prediction for the first n_owned atoms; their pair terms read the neighbours' features too."""
        n = _check_owned(n_owned, positions)
        if n < positions.shape[0]:
            atoms, edge_index, edge_shifts = self.encoder.subgraph(positions, edge_index, edge_shifts, n, 1)
            positions, momenta, types = gather(positions, atoms), gather(momenta, atoms), gather(types, atoms)
        h, i, j, unit, weight, radial = self.encoder(positions, types, edge_index, edge_shifts, n, 1)
        if n < positions.shape[0]:
            i, j, unit, weight, radial = _edges_centred_below(n, i, j, unit, weight, radial)
        masses = self.masses[types]
        velocity = momenta / masses.unsqueeze(1)
        vi, vj = gather(velocity, i), gather(velocity, j)
        relative = vj - vi
        scale = self.velocity_scale
        vi_u, vj_u = (vi * unit).sum(1) / scale, (vj * unit).sum(1) / scale
        symmetric = torch.stack([vi_u * vj_u, vi_u * vi_u + vj_u * vj_u, (vj_u - vi_u),
                                 (vi * vj).sum(1) / (scale * scale)], dim=1)
        edge_features = torch.cat([radial, symmetric], dim=1)
        first = self.transfer_head[0]
        hidden = _first_linear_symmetric(first.weight, first.bias, h, i, j, edge_features)
        transfer = self.transfer_head[2](self.transfer_head[1](hidden)) * weight.unsqueeze(1)
        mi, mj = gather(masses, i), gather(masses, j)
        reduced = (mi * mj / (mi + mj)).unsqueeze(1)
        # f_ij u_ij + g_ij mu_ij (v_j - v_i) is antisymmetric under i <-> j: sum_i delta_p_i = 0 exactly
        pair_dp = self.momentum_scale * transfer[:, :1] * unit + transfer[:, 1:] * reduced * relative
        delta_p = torch.zeros_like(momenta[:n]).index_add(0, i, pair_dp)
        first = self.position_head[0]
        hidden = _first_linear(first.weight, first.bias, h, i, j, edge_features)
        shift = self.position_head[2](self.position_head[1](hidden)) * weight.unsqueeze(1)
        pair_dq = self.length_scale * shift[:, :1] * unit + self.stride * shift[:, 1:] * relative
        delta_q = self.stride * (momenta[:n] + 0.5 * delta_p) / masses[:n].unsqueeze(1) \
            + torch.zeros_like(positions[:n]).index_add(0, i, pair_dq)
        return delta_q, delta_p


# A pair head's first Linear on [per-atom features of i and j, edge features] is applied to each atom's
# features once and gathered per edge: the same function as concatenating per edge, without the (E, 2F)
# concatenation and its (E, 2F) x (2F, F) product (on CPU the concatenation alone cost 20 % of a prediction).

def _first_linear(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
                  edge_features: torch.Tensor) -> torch.Tensor:
    """Linear(weight, bias) of [h_i, h_j, edge_features]."""
    f = h.shape[1]
    from_i = torch.nn.functional.linear(h, weight[:, :f])
    from_j = torch.nn.functional.linear(h, weight[:, f:2 * f])
    return gather(from_i, i) + gather(from_j, j) + torch.nn.functional.linear(edge_features, weight[:, 2 * f:], bias)


def _first_linear_symmetric(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, i: torch.Tensor,
                            j: torch.Tensor, edge_features: torch.Tensor) -> torch.Tensor:
    """Linear(weight, bias) of [h_i + h_j, h_i * h_j, edge_features]."""
    f = h.shape[1]
    from_atoms = torch.nn.functional.linear(h, weight[:, :f])
    product = gather(h, i) * gather(h, j)
    return gather(from_atoms, i) + gather(from_atoms, j) + torch.nn.functional.linear(product, weight[:, f:2 * f]) \
        + torch.nn.functional.linear(edge_features, weight[:, 2 * f:], bias)


def _check_owned(n_owned: int, positions: torch.Tensor) -> int:
    if n_owned < 0 or n_owned > positions.shape[0]:
        raise ValueError(f"n_owned must lie in [0, {positions.shape[0]}] (the number of atoms), got {n_owned}")
    return n_owned


def _edges_centred_below(n: int, i: torch.Tensor, j: torch.Tensor, unit: torch.Tensor, weight: torch.Tensor,
                         radial: torch.Tensor):
    """The edges centred on the first n atoms: the only ones their contributions sum."""
    keep = torch.nonzero(i < n).squeeze(1)
    return gather(i, keep), gather(j, keep), gather(unit, keep), gather(weight, keep), gather(radial, keep)


class LearnedAction(nn.Module):
    """An exportable model: the action alone."""

    def __init__(self, action: ActionNet):
        super().__init__()
        self.action = action

    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> torch.Tensor:
        return self.action(positions, momenta, types, edge_index, edge_shifts)

    @torch.jit.export
    def forward_owned(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                      edge_index: torch.Tensor, edge_shifts: torch.Tensor, n_owned: int) -> torch.Tensor:
        return self.action.owned(positions, momenta, types, edge_index, edge_shifts, n_owned)


class LearnedActionWithPredictor(LearnedAction):
    """An exportable model: the action and the predictor that gives the solver its first guess."""

    def __init__(self, action: ActionNet, predictor: Predictor):
        super().__init__(action)
        self.predictor = predictor

    @torch.jit.export
    def predict(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.predictor(positions, momenta, types, edge_index, edge_shifts)

    @torch.jit.export
    def predict_owned(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                      edge_index: torch.Tensor, edge_shifts: torch.Tensor,
                      n_owned: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.predictor.owned(positions, momenta, types, edge_index, edge_shifts, n_owned)
