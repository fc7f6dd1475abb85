"""Fixtures for the reference-data tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from amd_data_helpers import tiny_config


@pytest.fixture(scope="session")
def lj_file(tmp_path_factory) -> Path:
    """Tiny LJ-mixture reference: 2 temperatures x 2 segments x 41 frames, 32 atoms."""
    from actionmd.data.generate import generate

    path = tmp_path_factory.mktemp("lj") / "lj.h5"
    generate(tiny_config("lj-mixture", "temperatures=[80,120]"), path, progress=False)
    return path
