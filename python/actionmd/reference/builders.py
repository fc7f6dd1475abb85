"""Build reference actions with their metadata, ready for ``actionmd.model_file.export_model``.

Species may be given as symbols or atomic numbers; masses default to ASE's standard atomic masses.
Energies in eV, lengths in Å, strides in fs, frequencies in rad/fs.
"""
from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_masses, atomic_numbers

from .einstein import EinsteinAction
from .pair import HarmonicPair, LennardJones, MidpointPairAction, MidpointPairActionWithPredictor, Morse, pair_table


def atomic_numbers_of(species) -> list[int]:
    """['Ne', 18] -> [10, 18], with a clear error for an unknown symbol."""
    numbers = []
    for s in species:
        if isinstance(s, str):
            if s not in atomic_numbers:
                raise ValueError(f"unknown element symbol {s!r}")
            numbers.append(atomic_numbers[s])
        else:
            numbers.append(int(s))
    return numbers


def _masses(numbers, masses) -> list[float]:
    values = [float(atomic_masses[z]) for z in numbers] if masses is None else [float(m) for m in masses]
    if len(values) != len(numbers):
        raise ValueError(f"give one mass per species: {len(numbers)} species, {len(values)} masses")
    return values


def _metadata(numbers, masses, stride, cutoff, interaction_range, dtype, has_predictor, description):
    return dict(species=numbers, masses=masses, stride=float(stride), cutoff=float(cutoff),
                interaction_range=float(interaction_range), dtype=dtype, has_predictor=has_predictor,
                time_reversible=True, description=description, provenance={"kind": "reference"})


def _pair_model(potential, numbers, masses, stride, cutoff, switch_start, predictor, dtype, description):
    masses = _masses(numbers, masses)
    switch_start = 0.8 * cutoff if switch_start is None else switch_start
    cls = MidpointPairActionWithPredictor if predictor else MidpointPairAction
    module = cls(potential, torch.tensor(masses, dtype=torch.float64), stride, cutoff, switch_start)
    module = module.to(getattr(torch, dtype))
    meta = _metadata(numbers, masses, stride, cutoff, cutoff, dtype, predictor,
                     f"implicit midpoint (S = stride*H) for {description}, C2 switch from {switch_start:g} Å")
    meta["translation_invariant"] = True  # pair distances only
    return module, meta


def lennard_jones(species, epsilon, sigma, cutoff, stride, masses=None, switch_start=None,
                  predictor=False, dtype="float64"):
    """Several-species Lennard-Jones; per-species eps/sigma are mixed with Lorentz–Berthelot rules."""
    numbers = atomic_numbers_of(species)
    n = len(numbers)
    potential = LennardJones(pair_table(epsilon, n, "geometric", "epsilon"),
                             pair_table(sigma, n, "arithmetic", "sigma"))
    return _pair_model(potential, numbers, masses, stride, cutoff, switch_start, predictor, dtype,
                       "Lennard-Jones")


def morse(species, depth, alpha, r0, cutoff, stride, masses=None, switch_start=None, predictor=False,
          dtype="float64"):
    """Morse pairs; per-species parameters are mixed (depth geometric, alpha and r0 arithmetic)."""
    numbers = atomic_numbers_of(species)
    n = len(numbers)
    potential = Morse(pair_table(depth, n, "geometric", "depth"), pair_table(alpha, n, "arithmetic", "alpha"),
                      pair_table(r0, n, "arithmetic", "r0"))
    return _pair_model(potential, numbers, masses, stride, cutoff, switch_start, predictor, dtype, "Morse")


def harmonic_pairs(species, k, r0, cutoff, stride, masses=None, switch_start=None, predictor=False,
                   dtype="float64"):
    """Harmonic springs between all pairs inside the cutoff (e.g. a diatomic or a bead-spring cluster)."""
    numbers = atomic_numbers_of(species)
    n = len(numbers)
    potential = HarmonicPair(pair_table(k, n, "geometric", "k"), pair_table(r0, n, "arithmetic", "r0"))
    return _pair_model(potential, numbers, masses, stride, cutoff, switch_start, predictor, dtype,
                       "harmonic pairs")


def einstein(species, omegas, sites, stride, masses=None, dtype="float64"):
    """Exact action of independent oscillators at ``sites`` [N,3] (Å), one frequency (rad/fs) per species."""
    numbers = atomic_numbers_of(species)
    masses = _masses(numbers, masses)
    omegas = np.broadcast_to(np.asarray(omegas, dtype=np.float64), (len(numbers),)).copy()
    if (omegas <= 0).any():
        raise ValueError(f"Einstein frequencies must be positive (rad/fs), got {omegas.tolist()}")
    module = EinsteinAction(torch.tensor(np.asarray(sites, dtype=np.float64)), torch.tensor(omegas),
                            torch.tensor(masses, dtype=torch.float64), stride).to(getattr(torch, dtype))
    meta = _metadata(numbers, masses, stride, 0.0, 0.0, dtype, True,
                     f"exact harmonic action of {len(sites)} independent oscillators (Einstein crystal)")
    meta["omegas"] = omegas.tolist()
    meta["translation_invariant"] = False  # each oscillator is tied to its site
    return module, meta
