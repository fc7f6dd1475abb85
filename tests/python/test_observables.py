"""Observables agree with ASE's own definitions."""
import numpy as np

from actionmd.examples import ne_xe_crystal
from actionmd.observables import temperature_per_species
from actionmd.units import momenta_ase_to_model


def test_temperature_per_species_matches_ase():
    atoms = ne_xe_crystal(repeat=3, temperature_K=150, seed=4)
    per_species = temperature_per_species(atoms.numbers, atoms.get_masses(), momenta_ase_to_model(atoms.get_momenta()))
    for z, temperature in per_species.items():
        subset = atoms[atoms.numbers == z]
        expected = 2 * subset.get_kinetic_energy() / (3 * len(subset) * 8.617333262e-5)
        assert abs(temperature - expected) < 1e-6 * expected
    n_ne = (atoms.numbers == 10).sum()
    mixed = (per_species[10] * n_ne + per_species[54] * (len(atoms) - n_ne)) / len(atoms)
    assert abs(mixed - 2 * atoms.get_kinetic_energy() / (3 * len(atoms) * 8.617333262e-5)) < 1e-6 * mixed
