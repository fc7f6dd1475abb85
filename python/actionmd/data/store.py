"""The HDF5 container of reference trajectories (layout: docs/data.md).

The file is opened, written and closed once per finished phase, so a killed run loses at
most the phase in progress.  Groups are written under a ``.partial`` name and renamed when
complete (a single metadata operation); leftovers of an interrupted write are deleted on
the next open.  SIGINT/SIGTERM arriving during a write are held until the write is done.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import signal
import time
from pathlib import Path

import h5py
import numpy as np

from .config import ConfigError, config_differences, config_digest
from .lammps_run import Frame, State

FORMAT = "actionmd-reference"
FORMAT_VERSION = 1


@contextlib.contextmanager
def _signals_held():
    """Defer SIGINT/SIGTERM until the block is done (main thread only)."""
    received = []
    try:
        old = {s: signal.signal(s, lambda num, _frame: received.append(num))
               for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for num in received:
            signal.raise_signal(num)


def _open(path: Path, mode: str, patience_s: float = 60.0):
    """h5py.File, waiting while another process (a reader: h5ls, a notebook, training) holds the file's
    lock, instead of crashing a long generation run on a momentary lock."""
    deadline = time.monotonic() + patience_s
    delay = 0.01
    while True:
        try:
            return h5py.File(path, mode)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ConfigError(f"{path}: another process has held the file's lock for {patience_s:.0f} s; "
                                  "close it (or copy the file to read it) and re-run to continue") from None
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


def condition_name(c: int) -> str:
    return f"condition_{c:03d}"


def segment_name(k: int) -> str:
    return f"segment_{k:04d}"


class Store:
    """``state_class``: the engine's exact resume state (a dataclass of arrays, with a ``NOTE``).
    ``metadata["part"]`` (``K/N``, when given) must match an existing file's, so that one part's command never
    resumes another part's file."""

    def __init__(self, path: str | Path, cfg: dict, metadata: dict, state_class=State):
        self.path = Path(path)
        self.cfg = cfg
        self.state_class = state_class
        self.part = metadata.get("part", "")
        if self.path.exists() and self.path.stat().st_size > 0 and not self._check_existing():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _open(self.path, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
            f.attrs["config_digest"] = config_digest(cfg)
            f.attrs["created_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
            for key, value in metadata.items():
                f.attrs[key] = value

    def _check_existing(self) -> bool:
        """Ready the file to resume; True if it must be started afresh instead: its config differs but
        it holds no finished segment (a first run that failed, e.g. blew up, and a corrected config)."""
        try:
            f = _open(self.path, "a")
        except OSError as exc:
            raise ConfigError(
                f"{self.path} exists but cannot be opened as HDF5 ({exc}); move it away or choose another output"
            ) from None
        with f:
            if f.attrs.get("format") != FORMAT:
                raise ConfigError(
                    f"{self.path} exists and is not an actionmd reference file; choose another output"
                )
            old = json.loads(f.attrs["config_json"])
            if f.attrs.get("part", "") != self.part:
                held = f"part {f.attrs['part']}" if f.attrs.get("part", "") else "every condition (no --part)"
                raise ConfigError(f"{self.path} holds {held}; this run is "
                                  + (f"part {self.part}" if self.part else "without --part")
                                  + ": give the same --part as the command that started the file, or another output")
            if f.attrs["config_digest"] != config_digest(self.cfg):
                if not any(name.startswith("segment_") and not name.endswith(".partial")
                           for c in f.values() for name in c):
                    return True
                diffs = config_differences(old, self.cfg)
                raise ConfigError(
                    f"{self.path} was started with a different config; changed: " + "; ".join(diffs)
                    + ". Restore the original config to resume, or write to a new output file "
                    "(only protocol.segments may change, to extend a file)."
                )
            # Remove what an interrupted write may have left.
            for cname in list(f):
                if cname.endswith(".partial"):
                    del f[cname]
                    continue
                for gname in list(f[cname]):
                    if gname.endswith(".partial"):
                        del f[cname][gname]
            f.attrs["config_json"] = json.dumps(self.cfg, sort_keys=True)  # segments may have grown
        return False

    # ------------------------------------------------------------------ planning
    def plan(self, n_conditions: int) -> list[dict]:
        """Per condition: the next segment to run and the state to start it from."""
        out = []
        with _open(self.path, "r") as f:
            for c in range(n_conditions):
                cname = condition_name(c)
                entry = {"next_segment": 0, "state": None}
                if cname in f and "equilibrated" in f[cname]:
                    g = f[cname]
                    done = sorted(int(k.split("_")[1]) for k in g if k.startswith("segment_"))
                    if done != list(range(len(done))):
                        raise ConfigError(f"{self.path}:{cname} has non-contiguous segments {done}; file damaged")
                    last = g[segment_name(done[-1])]["final_state"] if done else g["equilibrated"]
                    entry = {"next_segment": len(done), "state": _read_state(last, self.state_class)}
                out.append(entry)
        return out

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _group(self, parent: str, name: str):
        with _signals_held(), _open(self.path, "a") as f:
            tmp = f"{parent}/{name}.partial" if parent else f"{name}.partial"
            if tmp in f:
                del f[tmp]
            g = f.create_group(tmp)
            yield g
            f.move(tmp, f"{parent}/{name}" if parent else name)
            f.flush()

    def write_condition(self, c: int, condition: dict, *, atomic_numbers, masses, types,
                        origin, cell, seeds: dict, equilibrated: State,
                        force_to_acceleration: float) -> None:
        with self._group("", condition_name(c)) as g:
            g.attrs["temperature_K"] = condition["temperature"]
            g.attrs["composition_json"] = json.dumps(condition["composition"])
            g.attrs["n_atoms"] = len(types)
            g.attrs["seeds_json"] = json.dumps(seeds)
            g.attrs["lammps_force_to_acceleration"] = force_to_acceleration
            g.create_dataset("atomic_numbers", data=np.asarray(atomic_numbers, dtype=np.int32))
            g.create_dataset("masses", data=np.asarray(masses, dtype=np.float64))
            g.create_dataset("types", data=np.asarray(types, dtype=np.int32))
            g.create_dataset("cell", data=np.asarray(cell, dtype=np.float64))
            g.create_dataset("lammps_origin", data=np.asarray(origin, dtype=np.float64))
            _write_state(g.create_group("equilibrated"), equilibrated)

    def write_segment(self, c: int, k: int, arrays: dict, final: State, attrs: dict) -> None:
        with self._group(condition_name(c), segment_name(k)) as g:
            for key, value in attrs.items():
                g.attrs[key] = value
            for key, value in arrays.items():
                g.create_dataset(key, data=value)
            _write_state(g.create_group("final_state"), final)


def _write_state(g, state) -> None:
    g.attrs["note"] = state.NOTE
    for field in dataclasses.fields(state):
        g.create_dataset(field.name, data=getattr(state, field.name))


def _read_state(g, state_class):
    return state_class(**{field.name: g[field.name][()] for field in dataclasses.fields(state_class)})


def frames_to_arrays(frames: list[Frame], origin, cell, masses, units) -> dict:
    """Convert LAMMPS frames into model-unit arrays (positions unwrapped, relative to the origin)."""
    x = np.stack([fr.x for fr in frames])
    image = np.stack([fr.image for fr in frames]).astype(np.float64)
    positions = x + image @ cell - origin
    momenta = masses[None, :, None] * units.velocity_to_model(np.stack([fr.v for fr in frames]))
    forces = units.force_to_model(np.stack([fr.f for fr in frames]))
    pe = units.energy_to_model(np.array([fr.pe for fr in frames]))
    return {"positions": positions, "momenta": momenta, "forces": forces, "potential_energy": pe}
