"""Building blocks shared by the action network and the predictor: radial basis, envelope, interactions.

Everything is invariant by construction: atoms see each other only through distances r_ij, species
embeddings and (for momenta) dot products, and every edge term is multiplied by a C2 envelope that goes
to zero at the cutoff, so the contract's "contribution smoothly zero at the cutoff" holds exactly.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn


class CosineEnvelope(nn.Module):
    """A C2 polynomial switch: 1 at r=0, 0 with zero first and second derivatives at r=cutoff."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = (r * (1.0 / self.cutoff)).clamp(0.0, 1.0)
        return 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


class BesselBasis(nn.Module):
    """sin(n pi r / rc) / r radial functions (as in DimeNet/NequIP), n = 1..size, times a per-edge envelope."""

    def __init__(self, cutoff: float, size: int):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("frequencies", math.pi * torch.arange(1, size + 1, dtype=torch.float64) / cutoff)

    def forward(self, r: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        # one (E, size) product, the rest per edge: on CPU the backward of per-edge-by-size divisions
        # and products costs more than the whole forward
        prefactor = envelope * math.sqrt(2.0 / self.cutoff) / r
        return torch.sin(self.frequencies * r.unsqueeze(-1)) * prefactor.unsqueeze(-1)


def gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] along the first axis. Its backward is index_add, where values[index]'s is a serial
    index_put with accumulation: 5x slower per edge on CPU, 20x into a few rows (species tables)."""
    return values.index_select(0, index)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (smooth, so forces and Hessians are continuous)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class Geometry(nn.Module):
    """Edge vectors, distances, unit vectors and enveloped radial features of a full neighbour list."""

    def __init__(self, cutoff: float, radial_size: int):
        super().__init__()
        self.envelope = CosineEnvelope(cutoff)
        self.basis = BesselBasis(cutoff, radial_size)
        self.cutoff = float(cutoff)

    def forward(self, positions: torch.Tensor, edge_index: torch.Tensor, edge_shifts: torch.Tensor):
        return self.features(positions, *self.within_cutoff(positions, edge_index, edge_shifts))

    def within_cutoff(self, positions: torch.Tensor, edge_index: torch.Tensor, edge_shifts: torch.Tensor):
        """(i, j, shifts) of the edges shorter than the cutoff.

        Engines pass neighbour lists with a skin (half the edges of a dense system lie past the cutoff);
        those weigh exactly 0 with zero derivatives, so dropping them changes nothing but the cost."""
        with torch.no_grad():
            i_all, j_all = edge_index[0], edge_index[1]
            r_all = torch.linalg.vector_norm(gather(positions, j_all) - gather(positions, i_all) + edge_shifts, dim=1)
            keep = torch.nonzero(r_all < self.cutoff).squeeze(1)
        return gather(i_all, keep), gather(j_all, keep), gather(edge_shifts, keep)

    def features(self, positions: torch.Tensor, i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor):
        vectors = gather(positions, j) - gather(positions, i) + shifts
        r = torch.linalg.vector_norm(vectors, dim=1)
        weight = self.envelope(r)
        radial = self.basis(r, weight)
        unit = vectors * (1.0 / r).unsqueeze(-1)
        return i, j, r, unit, weight, radial


class Interaction(nn.Module):
    """One message-passing layer: h_i += sum_j phi(h_i, h_j) * filter(radial_ij) (radial already enveloped).

    phi's first Linear acts on [h_i, h_j], so it is applied per atom and gathered per edge (N rows instead
    of E ~ 25 N); on species-only features (the first layer) phi is a species-pair table."""

    def __init__(self, features: int, radial_size: int):
        super().__init__()
        self.filter = nn.Linear(radial_size, features, bias=False)
        self.message = mlp([2 * features, features, features])
        self.update = mlp([features, features, features])

    def forward(self, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor, radial: torch.Tensor,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        first = self.message[0]
        f = h.shape[1]
        from_i = torch.nn.functional.linear(h, first.weight[:, :f], first.bias)
        from_j = torch.nn.functional.linear(h, first.weight[:, f:])
        phi = self.message[2](self.message[1](gather(from_i, i) + gather(from_j, j)))
        return self._aggregate(h, i, phi * self.filter(radial), rows)

    def from_species(self, species_features: torch.Tensor, types: torch.Tensor, i: torch.Tensor,
                     j: torch.Tensor, radial: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The layer on h = species_features[types]: phi is evaluated once per species pair."""
        n_species = species_features.shape[0]
        a = torch.arange(n_species, device=types.device)
        pairs_i, pairs_j = a.repeat_interleave(n_species), a.repeat(n_species)
        table = self.message(torch.cat([species_features[pairs_i], species_features[pairs_j]], dim=1))
        phi = gather(table, gather(types, i) * n_species + gather(types, j))
        return self._aggregate(gather(species_features, types), i, phi * self.filter(radial), rows)

    def _aggregate(self, h: torch.Tensor, i: torch.Tensor, messages: torch.Tensor,
                   rows: Optional[torch.Tensor]) -> torch.Tensor:
        """h + update(sum of messages), for every atom or only for ``rows`` (the edges then all centre on
        rows; the other atoms keep stale features that nothing reads)."""
        if rows is None:
            aggregated = torch.zeros_like(h).index_add(0, i, messages)
            return h + self.update(aggregated)
        compact_of = torch.full([h.shape[0]], -1, dtype=i.dtype, device=i.device)
        compact_of[rows] = torch.arange(rows.shape[0], dtype=i.dtype, device=i.device)
        aggregated = torch.zeros(rows.shape[0], h.shape[1], dtype=h.dtype, device=h.device).index_add(
            0, compact_of[i], messages)
        return h.index_add(0, rows, self.update(aggregated))


class AngularMoments(nn.Module):
    """Bond-angle information within one cutoff: per channel k, the neighbour moments
        A1_ik = sum_j w_k(r_ij, s_j) u_ij,   A2_ik = sum_j w_k(r_ij, s_j) (u_ij u_ij^T - I/3),
    and their rotation invariants |A1|^2, |A2|^2 and A1.A2.A1 (a low-order ACE/MTP-like power spectrum).
    Radial message passing alone sees only distances; a many-body potential such as SNAP needs angles.
    Reads species and positions only, so it adds one cutoff to the range of nothing that has layers >= 1."""

    def __init__(self, n_species: int, features: int, radial_size: int):
        super().__init__()
        self.filter = nn.Linear(radial_size, features, bias=False)
        self.species = nn.Embedding(n_species, features)
        self.update = mlp([3 * features, features, features])

    def forward(self, types: torch.Tensor, i: torch.Tensor, j: torch.Tensor, unit: torch.Tensor,
                radial: torch.Tensor, n_atoms: int) -> torch.Tensor:
        w = self.filter(radial) * gather(self.species.weight, gather(types, j))  # (E, K)
        eye = torch.eye(3, dtype=unit.dtype, device=unit.device)
        outer = unit.unsqueeze(2) * unit.unsqueeze(1) - eye / 3.0               # (E, 3, 3), traceless
        directions = torch.cat([unit, outer.reshape(-1, 9)], dim=1)             # (E, 12)
        # Moments only for the atoms that centre edges: in LAMMPS most ghost atoms centre none (the fix
        # builds edges only where outputs can matter), and padded blocks for them cost ~7x the work.
        centres, compact = centred_atoms(i, n_atoms)
        n_centres = centres.shape[0]
        # A per atom is W_i^T D_i over its own edges: one batched matmul on neighbour-padded blocks, far
        # cheaper (and its backward too) than scattering (E, K, 12) outer products.
        slots, width = neighbour_slots(compact, n_centres)
        k = w.shape[1]
        w_blocks = torch.zeros(n_centres * width, k, dtype=w.dtype, device=w.device).index_add(0, slots, w)
        d_blocks = torch.zeros(n_centres * width, 12, dtype=w.dtype, device=w.device).index_add(0, slots, directions)
        moments = torch.bmm(w_blocks.reshape(n_centres, width, k).transpose(1, 2),
                            d_blocks.reshape(n_centres, width, 12))              # (C, K, 12)
        a1, a2 = moments[:, :, :3], moments[:, :, 3:]
        a2_matrix = a2.reshape(n_centres, k, 3, 3)
        contraction = (a1.unsqueeze(3) * a2_matrix * a1.unsqueeze(2)).sum((2, 3))
        invariants = torch.cat([(a1 * a1).sum(2), (a2 * a2).sum(2), contraction], dim=1)
        # an atom without edges has zero moments: it gets update(0), as every atom did before compaction
        lone = self.update(torch.zeros(1, 3 * k, dtype=w.dtype, device=w.device))
        return lone.repeat(n_atoms, 1).index_copy(0, centres, self.update(invariants))


def centred_atoms(i: torch.Tensor, n_atoms: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The atoms that centre at least one edge (ascending), and each edge's centre renumbered among them."""
    with torch.no_grad():
        has_edges = torch.bincount(i, minlength=n_atoms) > 0
        centres = torch.nonzero(has_edges).squeeze(1)
        compact_of = torch.cumsum(has_edges.to(torch.int64), 0) - 1
    return centres, compact_of[i]


def neighbour_slots(i: torch.Tensor, n_atoms: int) -> Tuple[torch.Tensor, int]:
    """Each edge's slot in a (n_atoms, width) block layout, width = the most edges any atom has:
    slot = i * width + (rank of the edge among atom i's edges). Works for edges in any order."""
    with torch.no_grad():
        counts = torch.bincount(i, minlength=n_atoms)
        width = int(counts.max()) if i.numel() > 0 else 1
        order = torch.argsort(i, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(i)
        rank[order] = torch.arange(i.numel(), dtype=i.dtype, device=i.device) - starts[i[order]]
    return i * width + rank, width


def hop_shells(i: torch.Tensor, j: torch.Tensor, n_owned: int, n_atoms: int, depth: int) -> List[torch.Tensor]:
    """shells[k]: the atoms at most k edges from one of the first n_owned atoms, k = 0..depth."""
    with torch.no_grad():
        shells = [torch.arange(n_atoms, device=i.device) < n_owned]
        for _ in range(depth):
            grown = shells[-1].clone()
            grown[j[shells[-1][i]]] = True
            shells.append(grown)
    return shells


class Encoder(nn.Module):
    """Species embedding followed by ``layers`` interactions: invariant per-atom features; with
    ``angular``, the last features also get the angular moments of the first neighbour shell.

    With ``n_owned`` (a parallel engine's owned atoms come first), only features within ``hops`` edges of
    the owned atoms are made exact: layer l then updates only the atoms the later layers read, which skips
    most of a small subdomain's ghost shell. Other atoms' features are left stale: read only those within
    ``hops``, and only the edges returned (those centred within the layers' reach)."""

    def __init__(self, n_species: int, features: int, layers: int, cutoff: float, radial_size: int,
                 angular: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(n_species, features)
        self.geometry = Geometry(cutoff, radial_size)
        self.interactions = nn.ModuleList([Interaction(features, radial_size) for _ in range(layers)])
        self.angular = nn.ModuleList([AngularMoments(n_species, features, radial_size)] if angular else [])

    def forward(self, positions: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                edge_shifts: torch.Tensor, n_owned: int = -1, hops: int = 0):
        n_atoms = positions.shape[0]
        pruned = n_owned >= 0 and n_owned < n_atoms
        depth = self._depth(hops)
        i, j, shifts = self.geometry.within_cutoff(positions, edge_index, edge_shifts)
        # (an empty list for TorchScript's types when nothing is pruned)
        shells = hop_shells(i, j, n_owned, n_atoms, depth) if pruned else [torch.ones(0, dtype=torch.bool)]
        if pruned:  # no edge centred farther out reaches the wanted features
            keep = torch.nonzero(shells[depth][i]).squeeze(1)
            i, j, shifts = gather(i, keep), gather(j, keep), gather(shifts, keep)
        i, j, r, unit, weight, radial = self.geometry.features(positions, i, j, shifts)
        h = gather(self.embedding.weight, types)
        for layer, interaction in enumerate(self.interactions):
            rows: Optional[torch.Tensor] = None
            li, lj, lradial = i, j, radial
            if pruned:  # this layer's output is read out to (layers after it + hops) edges
                rows, li, lj, lradial = _centred_on(shells[len(self.interactions) - 1 - layer + hops], i, j, radial)
            if layer == 0:
                h = interaction.from_species(self.embedding.weight, types, li, lj, lradial, rows)
            else:
                h = interaction(h, li, lj, lradial, rows)
        for moments in self.angular:
            ai, aj, aunit, aradial = i, j, unit, radial
            if pruned:
                keep = torch.nonzero(shells[hops][i]).squeeze(1)
                ai, aj, aunit, aradial = gather(i, keep), gather(j, keep), gather(unit, keep), gather(radial, keep)
            h = h + moments(types, ai, aj, aunit, aradial, n_atoms)
        return h, i, j, unit, weight, radial

    def _depth(self, hops: int) -> int:
        """How many edges from the owned atoms the first layer's output is read."""
        return max(len(self.interactions) - 1, 0) + hops

    def subgraph(self, positions: torch.Tensor, edge_index: torch.Tensor, edge_shifts: torch.Tensor, n_owned: int,
                 hops: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(atoms, edge_index, edge_shifts): a part of the graph holding all that forward(..., n_owned, hops)
        reads, renumbered among ``atoms`` (ascending, so the owned atoms stay first). A LAMMPS rank passes a
        ghost shell many times its owned atoms; every per-atom tensor then shrinks to this part. Shells of
        the engine's list (with its skin) are a superset of the cutoff's, so nothing is measured here:
        forward drops the rest exactly."""
        n_atoms = positions.shape[0]
        depth = self._depth(hops)
        with torch.no_grad():
            shells = hop_shells(edge_index[0], edge_index[1], n_owned, n_atoms, depth + 1)
            keep = torch.nonzero(shells[depth][edge_index[0]]).squeeze(1)
            atoms = torch.nonzero(shells[depth + 1]).squeeze(1)
            compact_of = torch.full([n_atoms], -1, dtype=edge_index.dtype, device=edge_index.device)
            compact_of[atoms] = torch.arange(atoms.shape[0], dtype=edge_index.dtype, device=edge_index.device)
            edges = compact_of[edge_index[:, keep]]
        return atoms, edges, edge_shifts[keep]


def _centred_on(mask: torch.Tensor, i: torch.Tensor, j: torch.Tensor, radial: torch.Tensor):
    """The atoms of ``mask`` and the edges that centre on them."""
    with torch.no_grad():
        rows = torch.nonzero(mask).squeeze(1)
        keep = torch.nonzero(mask[i]).squeeze(1)
    return rows, gather(i, keep), gather(j, keep), gather(radial, keep)
