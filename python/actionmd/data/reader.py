"""Reading reference files for training: segments as numpy arrays, and (q, p) -> (q', p') pairs.

    ds = load_dataset(["cuni.h5", "more-cuni.h5"])
    train, val = ds.split(0.8, seed=0)           # by segment, never inside one
    for block in train.pairs(stride_fs=8.0):     # one block per segment
        block.q, block.p, block.q_next, block.p_next   # (n_pairs, N, 3)
        block.masses, block.atomic_numbers, block.cell

Units are the model units of docs/data.md (Å, fs, u, eV, u·Å/fs).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import h5py
import numpy as np

from .store import FORMAT, FORMAT_VERSION

ARRAYS = ("positions", "momenta", "forces", "potential_energy")


class DatasetError(ValueError):
    """Reference data that cannot be used as asked; the message names the problem and the fix."""


@dataclass
class Pairs:
    """All (q, p) -> (q', p') pairs at one stride from one NVE segment."""

    q: np.ndarray  # (n_pairs, N, 3) Å
    p: np.ndarray  # (n_pairs, N, 3) u·Å/fs
    q_next: np.ndarray
    p_next: np.ndarray
    masses: np.ndarray  # (N,) u
    atomic_numbers: np.ndarray  # (N,)
    cell: np.ndarray  # (3, 3) Å, rows are lattice vectors; fully periodic
    stride_fs: float
    source: str

    def __len__(self) -> int:
        return len(self.q)


@dataclass
class Segment:
    """One recorded NVE segment (frames ``record_every`` reference steps apart)."""

    source: str  # "file.h5:condition_000/segment_0001"
    file: str
    condition: str
    index: int
    temperature_K: float
    composition: dict | None
    masses: np.ndarray
    atomic_numbers: np.ndarray
    cell: np.ndarray
    frame_interval_fs: float
    force_to_acceleration: float  # Å/fs² per (eV/Å)/u, the constant the reference run used
    positions: np.ndarray  # (F, N, 3)
    momenta: np.ndarray
    forces: np.ndarray
    potential_energy: np.ndarray  # (F,)

    @property
    def n_frames(self) -> int:
        return len(self.positions)

    @property
    def n_atoms(self) -> int:
        return len(self.masses)

    def kinetic_energy(self) -> np.ndarray:
        """(F,) in eV."""
        return 0.5 * np.sum(self.momenta**2 / self.masses[None, :, None], axis=(1, 2)) / self.force_to_acceleration

    def pairs(self, frames_apart: int, overlapping: bool = True) -> Pairs:
        step = 1 if overlapping else frames_apart
        i = np.arange(0, self.n_frames - frames_apart, step)
        return Pairs(
            q=self.positions[i], p=self.momenta[i],
            q_next=self.positions[i + frames_apart], p_next=self.momenta[i + frames_apart],
            masses=self.masses, atomic_numbers=self.atomic_numbers, cell=self.cell,
            stride_fs=frames_apart * self.frame_interval_fs, source=self.source,
        )


@dataclass
class ReferenceDataset:
    segments: list[Segment]
    dt_fs: float  # reference velocity-Verlet step
    record_every: int  # reference steps between stored frames
    files: list[str] = field(default_factory=list)

    @property
    def frame_interval_fs(self) -> float:
        return self.dt_fs * self.record_every

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self):
        return iter(self.segments)

    def stride_frames(self, stride_steps: int | None = None, stride_fs: float | None = None) -> int:
        """Frames between the two members of a pair, from a stride in reference steps or fs."""
        if (stride_steps is None) == (stride_fs is None):
            raise DatasetError("give exactly one of stride_steps (reference steps) or stride_fs")
        if stride_fs is not None:
            ratio = stride_fs / self.dt_fs
            stride_steps = int(round(ratio))
            if stride_steps < 1 or not math.isclose(ratio, stride_steps, rel_tol=1e-9):
                raise DatasetError(
                    f"stride {stride_fs} fs is not a whole number of reference steps ({self.dt_fs} fs); "
                    f"use a multiple of {self.frame_interval_fs} fs"
                )
        if stride_steps < 1 or stride_steps % self.record_every:
            raise DatasetError(
                f"stride of {stride_steps} reference steps is not available: frames were stored every "
                f"{self.record_every} step(s) of {self.dt_fs} fs; use a multiple of {self.record_every} "
                "steps, or regenerate with a smaller protocol.record_every"
            )
        frames = stride_steps // self.record_every
        shortest = min(s.n_frames for s in self.segments)
        if frames >= shortest:
            raise DatasetError(
                f"stride of {stride_steps} steps ({stride_steps * self.dt_fs} fs) is as long as or longer "
                f"than the shortest segment ({(shortest - 1) * self.frame_interval_fs} fs); "
                "regenerate with a longer protocol.segment_steps"
            )
        return frames

    def pairs(self, stride_steps: int | None = None, *, stride_fs: float | None = None,
              overlapping: bool = True) -> list[Pairs]:
        """One :class:`Pairs` block per segment.  ``overlapping=False`` takes disjoint pairs."""
        frames = self.stride_frames(stride_steps, stride_fs)
        return [s.pairs(frames, overlapping) for s in self.segments]

    def split(self, fraction: float, seed: int = 0) -> tuple["ReferenceDataset", "ReferenceDataset"]:
        """Random split by whole segment (pairs of one segment are never on both sides)."""
        if not 0.0 < fraction < 1.0:
            raise DatasetError(f"split fraction must be between 0 and 1, got {fraction}")
        n = len(self.segments)
        if n < 2:
            raise DatasetError(
                f"cannot split {n} segment(s) by segment; generate more (protocol.segments)"
            )
        order = np.random.default_rng(seed).permutation(n)
        n_first = min(max(1, int(round(fraction * n))), n - 1)
        pick = lambda idx: ReferenceDataset([self.segments[i] for i in sorted(idx)],
                                            self.dt_fs, self.record_every, self.files)
        return pick(order[:n_first]), pick(order[n_first:])


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; generate it with `actionmd generate CONFIG -o {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise DatasetError(f"{path}: not an actionmd reference file (no format={FORMAT!r} attribute)")
    if int(f.attrs["format_version"]) > FORMAT_VERSION:
        f.close()
        raise DatasetError(
            f"{path}: format version {f.attrs['format_version']} is newer than this reader "
            f"({FORMAT_VERSION}); update actionmd"
        )
    return f


def reference_config(path: str | Path) -> dict:
    """The config a reference file was generated from (units, elements, potential lines, structure...):
    what re-evaluating energies under its reference potential needs."""
    with _open(Path(path)) as f:
        return json.loads(f.attrs["config_json"])


def _read_segments(path: Path, f: h5py.File) -> list[Segment]:
    segments = []
    for cname in sorted(k for k in f if k.startswith("condition_")):
        g = f[cname]
        static = {
            "masses": g["masses"][()], "atomic_numbers": g["atomic_numbers"][()], "cell": g["cell"][()],
        }
        comp = json.loads(g.attrs["composition_json"])
        for sname in sorted(k for k in g if k.startswith("segment_")):
            s = g[sname]
            source = f"{path}:{cname}/{sname}"
            arrays = {}
            for key in ARRAYS:
                if key not in s:
                    raise DatasetError(f"{source}: dataset {key!r} missing; file damaged, regenerate it")
                arr = s[key][()]
                bad = ~np.isfinite(arr)
                if bad.any():
                    frame = int(np.argwhere(bad)[0][0])
                    raise DatasetError(
                        f"{source}: {key} has {int(bad.sum())} NaN/inf value(s) (first in frame {frame}); "
                        "the reference run blew up -- reduce protocol.dt or check the potential, "
                        "then regenerate this file"
                    )
                arrays[key] = arr
            n = len(static["masses"])
            if arrays["positions"].shape[1:] != (n, 3) or len(static["atomic_numbers"]) != n:
                raise DatasetError(f"{source}: array shapes disagree with {n} atoms; file damaged")
            segments.append(Segment(
                source=source, file=str(path), condition=cname, index=int(sname.split("_")[1]),
                temperature_K=float(g.attrs["temperature_K"]), composition=comp,
                frame_interval_fs=float(f.attrs["frame_interval_fs"]),
                force_to_acceleration=float(g.attrs["lammps_force_to_acceleration"]),
                **static, **arrays,
            ))
    return segments


def segment_digest(segment: Segment) -> str:
    """sha256 of a segment's positions and momenta: its identity by content, whatever the file is called."""
    digest = hashlib.sha256()
    for array in (segment.positions, segment.momenta):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _check_distinct_segments(segments: list[Segment]) -> None:
    """The same trajectory twice (a copied or renamed file) could land on both sides of a train/validation
    split, so validation would score frames the model trained on: refused, naming both copies."""
    seen: dict[str, str] = {}
    for segment in segments:
        key = segment_digest(segment)
        if key in seen:
            raise DatasetError(f"{segment.source} holds the same positions and momenta as {seen[key]}: the same "
                               "trajectory twice (a copied or renamed file?) would leak into validation; "
                               "give each trajectory once")
        seen[key] = segment.source


def load_dataset(paths: str | Path | Iterable[str | Path],
                 species: Sequence[int | str] | None = None) -> ReferenceDataset:
    """Load and validate one or several reference files.

    ``species``: the atomic numbers (or symbols) a model supports; data with any other
    species is an error.  All files must share the reference dt and ``record_every``,
    and an element must have the same mass everywhere.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no files given")
    segments: list[Segment] = []
    timing = {}
    for path in paths:
        with _open(path) as f:
            timing[path] = (float(f.attrs["dt_fs"]), int(f.attrs["record_every"]))
            found = _read_segments(path, f)
        if not found:
            raise DatasetError(
                f"{path}: no finished segments; run (or re-run, it resumes) `actionmd generate CONFIG -o {path}`"
            )
        segments.extend(found)

    _check_distinct_segments(segments)
    if len(set(timing.values())) > 1:
        listing = ", ".join(f"{p}: dt {dt} fs, record_every {k}" for p, (dt, k) in timing.items())
        raise DatasetError(
            "files disagree on the reference time step or frame spacing (" + listing + "); "
            "one dataset needs one stride grid: regenerate with the same protocol.dt and "
            "protocol.record_every, or load them as separate datasets"
        )

    mass_of: dict[int, tuple[float, str]] = {}
    for s in segments:
        for z in np.unique(s.atomic_numbers):
            m = np.unique(s.masses[s.atomic_numbers == z])
            if len(m) > 1:
                raise DatasetError(f"{s.source}: atomic number {z} has several masses {m.tolist()}")
            if z in mass_of and not math.isclose(mass_of[z][0], m[0], rel_tol=1e-12):
                raise DatasetError(
                    f"atomic number {z} has mass {mass_of[z][0]} u in {mass_of[z][1]} but {m[0]} u in "
                    f"{s.source}; the model's masses must be unique per species: regenerate with the "
                    "same 'masses:' (or none) in every config"
                )
            mass_of.setdefault(int(z), (float(m[0]), s.source))

    if species is not None:
        from ase.data import atomic_numbers as z_of

        allowed = {z_of[x] if isinstance(x, str) else int(x) for x in species}
        extra = sorted(set(mass_of) - allowed)
        if extra:
            where = {z: mass_of[z][1] for z in extra}
            raise DatasetError(
                f"data contains atomic number(s) {extra} (e.g. {where}) that are not among the model's "
                f"species {sorted(allowed)}; add them to the model's species or leave these files out"
            )

    dt, every = next(iter(timing.values()))
    return ReferenceDataset(segments, dt, every, [str(p) for p in paths])
