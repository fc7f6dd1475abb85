"""Helpers for the reference-data tests (a unique module name: tests/ has no packages)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from actionmd.data.config import load_config

BIN = Path(sys.executable).parent

# A few seconds each; the protocol is the real one, only shorter and smaller.
TINY = {
    "lj-mixture": ["structure.repeat=[2,2,2]"],
    "cuni": ["structure.repeat=[2,2,2]"],
    "water": ["structure.water_box.molecules=8"],
    "ta-snap": ["structure.repeat=[2,2,2]", "protocol.record_every=1"],  # every step: the VV residual check
    "inp-snap": ["structure.repeat=[1,1,1]", "protocol.record_every=1"],
    "si-mliap": ["structure.repeat=[1,1,1]", "protocol.record_every=1"],
}
SHORT = ["protocol.equilibration_steps=200", "protocol.decorrelation_steps=50",
         "protocol.segments=2", "protocol.segment_steps=40"]


def tiny_config(system: str, *extra: str) -> dict:
    return load_config(system, TINY[system] + SHORT + list(extra))


def run_cli(*args: str, np: int | None = None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m actionmd.data generate ARGS`` in a subprocess (under mpirun -np NP if given)."""
    cmd = [sys.executable, "-m", "actionmd.data", "generate", *args]
    if np is not None:
        cmd = [str(BIN / "mpirun"), "-np", str(np), *cmd]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def cli_overrides(system: str, *extra: str) -> list[str]:
    out = [system]
    for item in TINY[system] + SHORT + list(extra):
        out += ["--set", item]
    return out + ["--no-progress"]


def vv_residuals(seg):
    """Max |q' - (q + dt p/m + dt² a/2)| and |p' - (p + dt m (a + a')/2)| over a segment."""
    dt = seg.frame_interval_fs
    m = seg.masses[None, :, None]
    a = seg.force_to_acceleration * seg.forces / m
    q, p = seg.positions, seg.momenta
    dq = q[1:] - (q[:-1] + dt * p[:-1] / m + 0.5 * dt**2 * a[:-1])
    dp = p[1:] - (p[:-1] + 0.5 * dt * m * (a[:-1] + a[1:]))
    return np.abs(dq).max(), np.abs(dp).max()


def _file_contents(path, ignore):
    out = {}
    with h5py.File(path) as f:
        out["/"] = {k: v for k, v in f.attrs.items() if k not in ignore}
        def visit(name, obj):
            out[name + "@attrs"] = dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
    return out


def assert_same_file(a, b, ignore=("created_utc",)):
    """The same groups, datasets (bit for bit) and attributes, apart from the root attributes ``ignore``."""
    ca, cb = _file_contents(a, ignore), _file_contents(b, ignore)
    assert ca.keys() == cb.keys()
    for key in ca:
        if isinstance(ca[key], np.ndarray):
            np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)  # bit for bit
        else:
            assert ca[key] == cb[key], key
