"""Read trajectories (ASE .traj / extxyz, LAMMPS text dumps) into a :class:`Trajectory`.

ASE does the parsing; this module adds what evaluation needs and ASE leaves open: the time between
frames (from an ASE MD trajectory's header or the dump's TIMESTEP values), the LAMMPS type -> element
map, the dump's units for velocities, and image flags for unwrapping (ASE drops ix iy iz).
"""
from __future__ import annotations

from pathlib import Path

import math

import ase.io
import numpy as np
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

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
                    format: str | None = None, flag_prefix: str = "--") -> Trajectory:
    """Read every frame of ``path``.

    interval_fs  time between saved frames; needed for extxyz and for .traj files not written by an ASE
                 MD object; overrides a .traj header (with a warning when they differ); for a dump given
                 with ``timestep_fs`` too, the two must agree
    timestep_fs  a LAMMPS dump's timestep: frame times are its TIMESTEP values times this
    types        elements of LAMMPS types 1, 2, ... (dumps without an ``element`` column)
    units        LAMMPS units of a dump (its velocities); metal or real
    masses       element -> mass (u) overriding ASE's standard masses (dumps carry none, or a ``mass``
                 column that must agree)
    flag_prefix  the CLI options that set interval_fs/timestep_fs, for messages (``--reference-``)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trajectory file")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise EvaluationError(f"{path}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}")
    if fmt == DUMP:
        return _read_dump(path, interval_fs, timestep_fs, types, units, masses, flag_prefix)
    return _read_ase(path, fmt, interval_fs, flag_prefix)  # ASE files carry the masses their velocities used


def _missing_time(path: Path, why: str, flag_prefix: str, dump: bool = False) -> EvaluationError:
    give = (f"{flag_prefix}timestep FS (the LAMMPS timestep) or {flag_prefix}interval FS (Python: timestep_fs= or "
            "interval_fs=)" if dump else f"{flag_prefix}interval FS (Python: interval_fs=...)")
    hint = "" if flag_prefix == "--" else "; the runs' --interval and --timestep do not apply to it"
    return EvaluationError(f"{path}: the time between frames is unknown ({why}); give it with {give}{hint}")


def _read_ase(path: Path, fmt: str, interval_fs: float | None, flag_prefix: str) -> Trajectory:
    try:
        frames = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:  # ASE raises many kinds for a malformed file
        raise EvaluationError(f"{path}: ASE could not read it as {fmt}: {exc}") from None
    recorded = _md_interval_fs(path) if fmt == "traj" else None
    if interval_fs is None:
        interval_fs = recorded
    if interval_fs is None:
        raise _missing_time(path, "the file does not record it" if fmt == "traj" else f"{fmt} does not record it",
                            flag_prefix)
    traj = Trajectory.from_atoms(frames, interval_fs, source=str(path))
    if recorded is not None and not math.isclose(interval_fs, recorded, rel_tol=1e-6):
        traj.warnings.append(f"{flag_prefix}interval {interval_fs:g} fs overrides the {recorded:g} fs between frames "
                             f"that {path.name}'s MD header records; drop {flag_prefix}interval unless the header "
                             "is wrong")
    return traj


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
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("ITEM: ATOMS"):
                    return line.split()[2:]
    except UnicodeDecodeError:
        raise EvaluationError(f"{path}: not a LAMMPS text dump ({DUMP}): it is not a text file; drop --format to "
                              "detect the format from the suffix, or name the right one") from None
    raise EvaluationError(f"{path}: not a LAMMPS text dump (no 'ITEM: ATOMS' line)")


def _read_dump(path: Path, interval_fs, timestep_fs, types, units, masses, flag_prefix) -> Trajectory:
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
        raise _too_few_types(path, types) from None
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
    interval_fs = _dump_interval(path, gaps, interval_fs, timestep_fs, flag_prefix)
    traj = Trajectory.from_atoms(frames, interval_fs, source=str(path))
    traj.potential_energy = None  # ASE gives dumps with forces a dummy energy of 0
    if {"type", "mass"} <= set(columns) and "element" not in columns:  # then ASE guesses elements by mass
        dump_types = _dump_columns(path, columns, ["type"], max_frames=1)[0, :, 0].astype(np.int64)
        if dump_types.max() > len(types):
            raise _too_few_types(path, types)
        traj.numbers = np.array([atomic_numbers[el] for el in types])[dump_types - 1]
    traj.masses = _mass_table(masses)[traj.numbers]
    if "mass" in columns:
        _check_dump_masses(path, traj, _dump_columns(path, columns, ["mass"], max_frames=1)[0, :, 0])
    if "xu" in columns and "x" not in columns:
        traj.unwrapped = True
    elif {"ix", "iy", "iz"} <= set(columns):
        traj.images = _dump_columns(path, columns, ["ix", "iy", "iz"]).astype(np.int64)
    return traj


def _too_few_types(path: Path, types) -> EvaluationError:
    return EvaluationError(f"{path}: the dump has more atom types than --types lists ({types})")


def _dump_interval(path: Path, gaps: np.ndarray, interval_fs, timestep_fs, flag_prefix: str) -> float:
    """The time between frames: the TIMESTEP gap x the timestep, and/or the interval given; both must agree."""
    from_steps = None if timestep_fs is None else (float(gaps[0]) if len(gaps) else 1.0) * timestep_fs
    if interval_fs is None and from_steps is None:
        raise _missing_time(path, "a dump records step numbers, not times", flag_prefix, dump=True)
    if interval_fs is not None and from_steps is not None and len(gaps) \
            and not math.isclose(interval_fs, from_steps, rel_tol=1e-6):
        raise EvaluationError(
            f"{path}: {flag_prefix}interval {interval_fs:g} fs contradicts the dump: its frames are {int(gaps[0])} "
            f"steps apart, which at {flag_prefix}timestep {timestep_fs:g} fs is {from_steps:g} fs; give only "
            f"{flag_prefix}timestep (the LAMMPS timestep) and drop {flag_prefix}interval")
    return float(interval_fs if interval_fs is not None else from_steps)


def _mass_table(masses: dict[str, float] | None) -> np.ndarray:
    """Mass (u) by atomic number: ASE's standard masses, overridden by ``masses`` (a system's)."""
    masses = masses or {}
    unknown = set(masses) - set(atomic_numbers)
    if unknown:
        raise EvaluationError(f"masses: unknown element(s) {sorted(unknown)}")
    table = atomic_masses.copy()
    for element, mass in masses.items():
        table[atomic_numbers[element]] = mass
    return table


def _check_dump_masses(path: Path, traj: Trajectory, dumped: np.ndarray) -> None:
    """The masses the dump's run used must be those evaluation uses: else the elements are wrong
    (e.g. --types in the wrong order) and every kinetic energy with them."""
    bad = np.flatnonzero(~np.isclose(dumped, traj.masses, rtol=1e-3, atol=0))
    if len(bad):
        k = int(bad[0])
        element = chemical_symbols[traj.numbers[k]]
        raise EvaluationError(
            f"{path}: atom {k + 1} (in id order) has mass {dumped[k]:g} u in the dump, but evaluation reads it as "
            f"{element} of mass {traj.masses[k]:g} u: the elements (--types, or the --system's element order) are "
            "not in the dump's LAMMPS type order, or the run used other masses (give them in a system config's "
            "masses)")


def _dump_columns(path: Path, columns: list[str], names: list[str], max_frames: int | None = None) -> np.ndarray:
    """Columns ``names`` of every frame (or the first ``max_frames``), atoms sorted by id as ASE sorts them:
    (F, N, len(names))."""
    wanted = [columns.index(name) for name in names]
    sort_by = columns.index("id") if "id" in columns else None
    out = []
    with open(path) as handle:
        for line in handle:
            if len(out) == max_frames:
                break
            if line.startswith("ITEM: NUMBER OF ATOMS"):
                n = int(next(handle))
            elif line.startswith("ITEM: ATOMS"):
                rows = np.loadtxt([next(handle) for _ in range(n)], ndmin=2, dtype=str)
                block = rows[:, wanted].astype(np.float64)
                if sort_by is not None:
                    block = block[np.argsort(rows[:, sort_by].astype(np.int64))]
                out.append(block)
    return np.stack(out)
