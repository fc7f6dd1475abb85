"""Radial distribution functions per species pair, and the L1 distance between two of them.

    g_ab(r) = <n_ab(r, r + dr)> / (P_ab 4π/3 ((r + dr)^3 - r^3) / V)

n_ab counts pairs (one a, one b; distinct atoms, every periodic image) in the shell, and P_ab is the
number of such pairs: N_a N_b for a != b, N_a (N_a - 1) / 2 for a = b.  With N_a (N_a - 1) rather
than N_a^2 uncorrelated points give g = 1 exactly in expectation, at every r.

    L1(g, g_ref) = ∫_0^r_max |g - g_ref| dr / ∫_0^r_max g_ref dr

(on the common grid of equal bins this is sum |Δg| / sum g_ref): dimensionless, 0 for identical
curves, the mean relative deviation where there is structure.
"""
from __future__ import annotations

import numpy as np
import vesin
from ase.data import chemical_symbols
from ase.geometry import wrap_positions

from .trajectory import EvaluationError, Trajectory


def pair_names(species: list[int]) -> list[str]:
    return [f"{chemical_symbols[a]}-{chemical_symbols[b]}" for k, a in enumerate(species) for b in species[k:]]


def rdf(traj: Trajectory, r_max: float, bins: int = 200, max_frames: int = 200) -> dict:
    """g(r) per species pair, averaged over up to ``max_frames`` frames spread evenly over the run.

    Returns r (bin centres, Å), edges, pairs {"A-B": g}, and halves {"A-B": (g of the first half of the
    frames used, g of the second half)}: their L1 distance is the statistical noise floor of L1.
    """
    if not r_max > 0:
        raise EvaluationError(f"r_max must be positive, got {r_max}")
    frames = np.unique(np.linspace(0, traj.n_frames - 1, min(traj.n_frames, max_frames)).round().astype(int))
    species = traj.species
    kind = np.searchsorted(species, traj.numbers)  # 0..S-1 per atom
    s = len(species)
    pair_index = np.full((s, s), -1)
    iu = np.triu_indices(s)
    pair_index[iu] = np.arange(len(iu[0]))
    pair_index[iu[1], iu[0]] = pair_index[iu]
    n_pairs = len(iu[0])
    counts = np.zeros((len(frames), n_pairs * bins), dtype=np.int64)
    calculator = vesin.NeighborList(cutoff=r_max, full_list=False)
    for row, k in enumerate(frames):
        points = wrap_positions(traj.positions[k], traj.cells[k], pbc=True)
        i, j, d = calculator.compute(points, traj.cells[k], True, "ijd")
        keep = (i != j) & (d < r_max)  # i == j: an atom's own periodic image
        b = (d[keep] * (bins / r_max)).astype(np.int64)
        counts[row] = np.bincount(pair_index[kind[i[keep]], kind[j[keep]]] * bins + b, minlength=n_pairs * bins)
    counts = counts.reshape(len(frames), n_pairs, bins)
    edges = np.linspace(0.0, r_max, bins + 1)
    shell = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    n_of = np.bincount(kind, minlength=s).astype(np.float64)
    pairs = np.where(iu[0] == iu[1], n_of[iu[0]] * (n_of[iu[0]] - 1) / 2, n_of[iu[0]] * n_of[iu[1]])
    inverse_volume = 1.0 / traj.volumes[frames]

    def g(rows):
        expected = pairs[:, None] * shell[None, :] * inverse_volume[rows].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(expected > 0, counts[rows].sum(axis=0) / expected, 0.0)

    names = pair_names(species)
    everything = g(slice(None))
    half = len(frames) // 2
    first, second = g(slice(0, half)), g(slice(half, None))
    return {"r": 0.5 * (edges[1:] + edges[:-1]), "edges": edges, "frames_used": len(frames),
            "pairs": dict(zip(names, everything)),
            "halves": {name: (first[p], second[p]) for p, name in enumerate(names)}}


def rdf_l1(g: np.ndarray, g_ref: np.ndarray) -> float:
    """∫|g - g_ref| dr / ∫ g_ref dr on a common grid of equal bins."""
    g, g_ref = np.asarray(g), np.asarray(g_ref)
    if g.shape != g_ref.shape:
        raise EvaluationError(f"RDFs on different grids ({g.shape} vs {g_ref.shape}): compute both with the same "
                              "r_max and bins")
    return float(np.abs(g - g_ref).sum() / g_ref.sum())
