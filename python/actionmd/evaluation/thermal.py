"""Equipartition: kinetic temperature per species, per Cartesian direction, and (water) per motion.

A long-stride integrator that resolves light and heavy atoms differently shows up as species (or
directions, or intra- versus inter-molecular motion) at different temperatures in NVE.
"""
from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols

from ..units import EV, KB_EV
from .molecules import looks_like_water, water_molecules
from .trajectory import EvaluationError, Trajectory

BLOCKS = 8  # block averages for the standard error of a mean temperature


def block_stderr(series: np.ndarray, blocks: int = BLOCKS) -> float:
    """Standard error of the mean of a correlated series from ``blocks`` block means."""
    n = len(series) // blocks
    if n == 0:
        return float("nan")
    means = series[: n * blocks].reshape(blocks, n).mean(axis=1)
    return float(means.std(ddof=1) / np.sqrt(blocks))


def temperatures(traj: Trajectory) -> dict:
    """T = <m v_a^2> / k_B per species and direction a (one degree of freedom each, 3 per atom).

    ``spread`` = (max - min of the species temperatures) / T of all atoms: the equipartition figure;
    ``spread_stderr`` its standard error from the block errors of the hottest and coldest species.
    """
    v = traj.require_velocities("a kinetic temperature")
    per_dof = traj.masses[None, :, None] * v * v / (EV * KB_EV)  # (F, N, 3), K
    out = {"all_K": float(per_dof.mean()), "series_all_K": per_dof.mean(axis=(1, 2)), "per_species": {}}
    for z in traj.species:
        mine = per_dof[:, traj.numbers == z]
        series = mine.mean(axis=(1, 2))
        out["per_species"][chemical_symbols[z]] = {
            "mean_K": float(series.mean()),
            "stderr_K": block_stderr(series),
            "per_direction_K": mine.mean(axis=(0, 1)).tolist(),
            "series_K": series,
        }
    species = list(out["per_species"].values())
    hot = max(species, key=lambda s: s["mean_K"])
    cold = min(species, key=lambda s: s["mean_K"])
    out["spread"] = (hot["mean_K"] - cold["mean_K"]) / out["all_K"]
    out["spread_stderr"] = float(np.hypot(hot["stderr_K"], cold["stderr_K"]) / out["all_K"]) if hot is not cold else 0.0
    if looks_like_water(traj.numbers):
        try:
            out["water"] = water_temperatures(traj)
        except EvaluationError as err:
            out["water"] = {"note": str(err)}
    return out


def water_temperatures(traj: Trajectory) -> dict:
    """Molecular centre-of-mass translation (3 dof per molecule) versus the rest (rotation and
    vibration, 6 dof per molecule); molecules are rebuilt from the first frame."""
    v = traj.require_velocities("molecular temperatures")
    molecules = water_molecules(traj.numbers, traj.positions[0], traj.cells[0])
    m = traj.masses[molecules]  # (M, 3)
    total_mass = m.sum(axis=1)  # (M,)
    momentum = np.einsum("ma,fmai->fmi", m, v[:, molecules])  # (F, M, 3)
    translational = np.einsum("fmi,fmi,m->f", momentum, momentum, 1.0 / total_mass)  # sum of M V^2 = P^2 / M
    all_twice_kinetic = np.einsum("n,fni,fni->f", traj.masses, v, v)
    n_mol = len(molecules)
    t_trans = translational / (3 * n_mol * EV * KB_EV)
    t_int = (all_twice_kinetic - translational) / (6 * n_mol * EV * KB_EV)
    return {
        "molecules": n_mol,
        "translational_K": float(t_trans.mean()), "translational_stderr_K": block_stderr(t_trans),
        "internal_K": float(t_int.mean()), "internal_stderr_K": block_stderr(t_int),
        "relative_difference": float((t_int.mean() - t_trans.mean()) / (all_twice_kinetic.mean()
                                                                         / (9 * n_mol * EV * KB_EV))),
        "series_translational_K": t_trans, "series_internal_K": t_int,
    }
