"""Observables shared by training checks and evaluation (model units: u·Å/fs, u)."""
from __future__ import annotations

import numpy as np

from .units import EV, KB_EV


def temperature_per_species(numbers: np.ndarray, masses: np.ndarray, momenta: np.ndarray) -> dict[int, float]:
    """Kinetic temperature (K) of each species, 3 degrees of freedom per atom."""
    kinetic = 0.5 * (momenta**2).sum(1) / masses  # u·Å²/fs²
    return {int(z): float(2 * kinetic[numbers == z].sum() / (3 * (numbers == z).sum() * KB_EV * EV))
            for z in np.unique(numbers)}
