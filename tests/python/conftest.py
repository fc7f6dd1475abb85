"""Reference models exported once per session, and small systems to run them on."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from actionmd.model_file import export_model
from actionmd.reference import einstein, lennard_jones

torch.set_num_threads(2)

# Ne-Xe mixture with Lorentz–Berthelot mixing (eV, Å): mass ratio 6.5
NE_XE = dict(species=["Ne", "Xe"], epsilon=[0.00312, 0.0192], sigma=[2.79, 3.97])


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


def ne_xe_crystal(repeat=2, temperature_K=40.0, seed=0):
    """An fcc crystal with alternating Ne and Xe (periodic), thermalised with zero total momentum."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    atoms = bulk("Ar", "fcc", a=5.6, cubic=True).repeat(repeat)
    atoms.numbers = np.where(np.arange(len(atoms)) % 2 == 0, 10, 54)
    atoms.set_masses()
    atoms.rattle(0.05, seed=seed)
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


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
