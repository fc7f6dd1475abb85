"""Helpers for the reference-data tests (a unique module name: tests/ has no packages)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from actionmd.data.config import load_config

BIN = Path(sys.executable).parent

# A few seconds each; the protocol is the real one, only shorter and smaller.
TINY = {
    "lj-mixture": ["structure.repeat=[2,2,2]"],
    "cuni": ["structure.repeat=[2,2,2]"],
    "water": ["structure.water_box.molecules=8"],
    "ta-snap": ["structure.repeat=[2,2,2]", "protocol.record_every=1"],  # every step: the VV residual check
    "inp-snap": ["structure.repeat=[1,1,1]", "protocol.record_every=1"],
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
