"""Reference models exported once per session, and small systems to run them on."""
import numpy as np
import pytest
import torch
from ase import Atoms

from actionmd.model_file import export_model
from actionmd.reference import einstein, lennard_jones

torch.set_num_threads(2)

from actionmd.examples import NE_XE, ne_xe_crystal  # noqa: F401  (re-exported for the tests)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def export(module_and_meta, path):
    export_model(module_and_meta[0], path, module_and_meta[1])
    return str(path)


@pytest.fixture(scope="session")
def lj_mixture_model(model_dir):
    """Implicit midpoint for the Ne–Xe mixture, 8 fs stride, float64."""
    return export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0), model_dir / "nexe.pt")


@pytest.fixture(scope="session")
def lj_mixture_model_f32(model_dir):
    return export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0, dtype="float32"), model_dir / "nexe32.pt")


def ne_xe_cluster(seed=0, a=3.06):
    """A 7-atom non-periodic Ne/Xe cluster; the default spacing a (Å) compresses it into a strongly
    coupled, anharmonic action."""
    rng = np.random.default_rng(seed)
    positions = np.array([[0, 0, 0], [a, 0, 0], [0, a, 0], [0, 0, a], [a, a, 0], [a, 0, a],
                          [0, a, a]], dtype=float) + rng.normal(scale=0.1, size=(7, 3))
    atoms = Atoms(numbers=[10, 54, 10, 54, 10, 54, 10], positions=positions)
    atoms.set_momenta(rng.normal(scale=0.5, size=(7, 3)) * np.sqrt(atoms.get_masses())[:, None] * 0.02)
    return atoms


@pytest.fixture
def crystal():
    return ne_xe_crystal()


@pytest.fixture
def cluster():
    return ne_xe_cluster()
