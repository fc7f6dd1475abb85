"""Read trajectories (ASE .traj / extxyz, LAMMPS text dumps) into a :class:`Trajectory`.

ASE does the parsing; this module adds what evaluation needs and ASE leaves open: the time between
frames (from an ASE MD trajectory's header or the dump's TIMESTEP values), the LAMMPS type -> element
map, the dump's units for velocities, and image flags for unwrapping (ASE drops ix iy iz).
"""
from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
from ase.data import atomic_masses, atomic_numbers

from .trajectory import EvaluationError, Trajectory

ASE_FORMATS = {".traj": "traj", ".xyz": "extxyz", ".extxyz": "extxyz"}
DUMP_SUFFIXES = {".dump", ".lammpstrj", ".lammpsdump"}
DUMP = "lammps-dump-text"
FORMATS = ("traj", "extxyz", DUMP)
DUMP_UNITS = ("metal", "real")


def detect_format(path: Path) -> str:
    """traj, extxyz or lammps-dump-text, from the suffix or (for dumps) the first line."""
    suffix = path.suffix.lower()
    if suffix in ASE_FORMATS:
        return ASE_FORMATS[suffix]
    if suffix in DUMP_SUFFIXES:
        return DUMP
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"ITEM: TIMESTEP"):
        return DUMP
    if head.startswith(b"- of Ulm"):  # ASE's binary trajectory (ulm) header
        return "traj"
    raise EvaluationError(f"{path}: unknown trajectory format (suffix {suffix or 'none'!r}); use .traj, .xyz/.extxyz "
                          f"or a LAMMPS text dump (.dump/.lammpstrj), or name it with --format {{{','.join(FORMATS)}}}")


def read_trajectory(path, *, interval_fs: float | None = None, timestep_fs: float | None = None,
                    types: list[str] | None = None, units: str = "metal", masses: dict[str, float] | None = None,
                    format: str | None = None) -> Trajectory:
    """Read every frame of ``path``.

    interval_fs  time between saved frames; overrides what the file says (needed for extxyz and for
                 .traj files not written by an ASE MD object)
    timestep_fs  a LAMMPS dump's timestep: frame times are its TIMESTEP values times this
    types        elements of LAMMPS types 1, 2, ... (dumps without an ``element`` column)
    units        LAMMPS units of a dump (its velocities); metal or real
    masses       element -> mass (u) overriding ASE's standard masses (dumps carry none)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trajectory file")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise EvaluationError(f"{path}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
    if fmt == DUMP:
        traj = _read_dump(path, interval_fs, timestep_fs, types, units)
    else:
        traj = _read_ase(path, fmt, interval_fs)
    if masses and fmt == DUMP:  # ASE files carry their own masses (their velocities were made with them)
        unknown = set(masses) - set(atomic_numbers)
        if unknown:
            raise EvaluationError(f"masses: unknown element(s) {sorted(unknown)}")
        table = atomic_masses.copy()
        for element, mass in masses.items():
            table[atomic_numbers[element]] = mass
        traj.masses = table[traj.numbers]
    return traj


def _missing_time(path: Path, what: str) -> EvaluationError:
    return EvaluationError(f"{path}: the time between frames is unknown ({what}); give it with --interval FS "
                           "(Python: interval_fs=...)")


def _read_ase(path: Path, fmt: str, interval_fs: float | None) -> Trajectory:
    try:
        frames = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:  # ASE raises many kinds for a malformed file
        raise EvaluationError(f"{path}: ASE could not read it as {fmt}: {exc}") from None
    if interval_fs is None and fmt == "traj":
        interval_fs = _md_interval_fs(path)
    if interval_fs is None:
        raise _missing_time(path, "the file does not record it" if fmt == "traj" else f"{fmt} does not record it")
    return Trajectory.from_atoms(frames, interval_fs, source=str(path))


def _md_interval_fs(path: Path) -> float | None:
    """An ASE MD trajectory's header: {'timestep': dt (ASE units), 'interval': frames written every n steps}."""
    from ase import units
    from ase.io.trajectory import Trajectory as AseTrajectory

    with AseTrajectory(str(path)) as handle:
        description = getattr(handle, "description", None) or {}
    if description.get("type") != "molecular-dynamics" or "timestep" not in description:
        return None
    return float(description["timestep"]) / units.fs * int(description.get("interval", 1))


# ---------------------------------------------------------------------- LAMMPS dumps
def _dump_header(path: Path) -> list[str]:
    with open(path) as handle:
        for line in handle:
            if line.startswith("ITEM: ATOMS"):
                return line.split()[2:]
    raise EvaluationError(f"{path}: not a LAMMPS text dump (no 'ITEM: ATOMS' line)")


def _read_dump(path: Path, interval_fs, timestep_fs, types, units) -> Trajectory:
    if units not in DUMP_UNITS:
        raise EvaluationError(f"{path}: dump units {units!r} are not supported; use one of {DUMP_UNITS}")
    columns = _dump_header(path)
    if "element" not in columns:
        if "type" not in columns:
            raise EvaluationError(f"{path}: the dump has neither an 'element' nor a 'type' column")
        if not types:
            raise EvaluationError(f"{path}: the dump has LAMMPS atom types but no elements; give the element of "
                                  "each type in order with --types EL1 EL2 ... (or --system NAME, whose 'elements' "
                                  "are used)")
        bad = [t for t in types if t not in atomic_numbers]
        if bad:
            raise EvaluationError(f"--types: {bad} are not chemical symbols")
    try:
        frames = ase.io.read(path, index=":", format=DUMP, specorder=list(types or []) or None, units=units)
    except IndexError:
        raise EvaluationError(f"{path}: the dump has more atom types than --types lists ({types})") from None
    except Exception as exc:
        raise EvaluationError(f"{path}: ASE could not read the dump: {exc}") from None
    steps = np.array([atoms.info.get("timestep", 0) for atoms in frames], dtype=np.int64)
    gaps = np.diff(steps)
    bad = np.flatnonzero((gaps <= 0) | (gaps != gaps[:1]))
    if len(bad):
        k = int(bad[0])
        raise EvaluationError(
            f"{path}: frames are not equally spaced in time: TIMESTEP goes {steps[k]} -> {steps[k + 1]} at "
            f"frame {k + 1}, but {steps[0]} -> {steps[1]} at the start; evaluate uniformly saved frames "
            "(split the file, or drop the repeated frames of a restart)")
    if interval_fs is None:
        if timestep_fs is None:
            raise _missing_time(path, "a dump records step numbers, not times: give --timestep FS, the LAMMPS "
                                      "timestep, or --interval FS")
        interval_fs = float(gaps[0]) * timestep_fs if len(gaps) else float(timestep_fs)
    traj = Trajectory.from_atoms(frames, interval_fs, source=str(path))
    traj.potential_energy = None  # ASE gives dumps with forces a dummy energy of 0
    if "xu" in columns and "x" not in columns:
        traj.unwrapped = True
    elif {"ix", "iy", "iz"} <= set(columns):
        traj.images = _dump_columns(path, columns, ["ix", "iy", "iz"]).astype(np.int64)
    return traj


def _dump_columns(path: Path, columns: list[str], names: list[str]) -> np.ndarray:
    """Columns ``names`` of every frame, atoms sorted by id as ASE sorts them: (F, N, len(names))."""
    wanted = [columns.index(name) for name in names]
    sort_by = columns.index("id") if "id" in columns else None
    out = []
    with open(path) as handle:
        for line in handle:
            if line.startswith("ITEM: NUMBER OF ATOMS"):
                n = int(next(handle))
            elif line.startswith("ITEM: ATOMS"):
                rows = np.loadtxt([next(handle) for _ in range(n)], ndmin=2, dtype=str)
                block = rows[:, wanted].astype(np.float64)
                if sort_by is not None:
                    block = block[np.argsort(rows[:, sort_by].astype(np.int64))]
                out.append(block)
    return np.stack(out)
