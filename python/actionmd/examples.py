"""The embedded default system: a Ne–Xe Lennard-Jones crystal (mass ratio 6.5), used by the demo,
the benchmarks and the tests."""
from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta

#: Ne–Xe Lennard-Jones parameters (eV, Å), mixed with Lorentz–Berthelot rules by actionmd.reference.
NE_XE = dict(species=["Ne", "Xe"], epsilon=[0.00312, 0.0192], sigma=[2.79, 3.97])


def ne_xe_crystal(repeat=2, temperature_K: float = 40.0, seed: int = 0, a: float = 5.6):
    """fcc with alternating Ne and Xe, rattled, thermalised, zero total momentum (periodic)."""
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(repeat)
    atoms.numbers = np.where(np.arange(len(atoms)) % 2 == 0, 10, 54)
    atoms.set_masses()
    atoms.rattle(0.05, seed=seed)
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms
