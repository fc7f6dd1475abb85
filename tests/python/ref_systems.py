"""Helpers shared by the Python tests: exporting reference models and small systems to run them on.
(A module of its own: every test folder has a conftest.py, so `from conftest import` is ambiguous.)"""
import numpy as np
from ase import Atoms

from actionmd.examples import NE_XE, ne_xe_crystal  # noqa: F401  (re-exported for the tests)
from actionmd.model_file import export_model


def export(module_and_meta, path):
    """Export a (module, metadata) pair from actionmd.reference/models; return the path as str."""
    export_model(module_and_meta[0], path, module_and_meta[1])
    return str(path)


def ne_xe_cluster(seed=0, a=3.06):
    """A 7-atom non-periodic Ne/Xe cluster; the default spacing a (Å) compresses it into a strongly
    coupled, anharmonic action."""
    rng = np.random.default_rng(seed)
    positions = np.array([[0, 0, 0], [a, 0, 0], [0, a, 0], [0, 0, a], [a, a, 0], [a, 0, a],
                          [0, a, a]], dtype=float) + rng.normal(scale=0.1, size=(7, 3))
    atoms = Atoms(numbers=[10, 54, 10, 54, 10, 54, 10], positions=positions)
    atoms.set_momenta(rng.normal(scale=0.5, size=(7, 3)) * np.sqrt(atoms.get_masses())[:, None] * 0.02)
    return atoms
