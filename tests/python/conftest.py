"""Reference models exported once per session (fixtures); helpers live in ref_systems.py."""
import pytest
import torch

from actionmd.reference import lennard_jones

from ref_systems import NE_XE, export

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def lj_mixture_model(model_dir):
    """Implicit midpoint for the Ne–Xe mixture, 8 fs stride, float64."""
    return export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0), model_dir / "nexe.pt")


@pytest.fixture(scope="session")
def lj_mixture_model_f32(model_dir):
    return export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0, dtype="float32"), model_dir / "nexe32.pt")
