"""The in-memory trajectory every evaluation works on: arrays in model units, uniform time.

Keeping one plain container (rather than lists of ASE Atoms) lets every observable be a vectorised
numpy expression over (frames, atoms, 3) arrays, and puts all input checks in one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols
from ase.geometry import find_mic

from ..units import FS


class EvaluationError(ValueError):
    """Input that cannot be evaluated; the message names the problem and the fix."""


@dataclass
class Trajectory:
    """Frames of one run, equally spaced in time.

    positions  (F, N, 3) Å as saved (wrapped or not; see :meth:`unwrapped_positions`)
    cells      (F, 3, 3) Å, rows are the lattice vectors
    velocities (F, N, 3) Å/fs, or None when the file has none
    images     (F, N, 3) integer image flags (LAMMPS ix iy iz), or None
    unwrapped  True when ``positions`` are known to be unwrapped (LAMMPS xu yu zu)
    potential_energy (F,) eV as stored in the file (ASE calculator results), or None
    warnings   what reading noticed but did not refuse (evaluate() reports them)
    """

    numbers: np.ndarray
    masses: np.ndarray
    positions: np.ndarray
    cells: np.ndarray
    interval_fs: float
    velocities: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.ones(3, bool))
    images: np.ndarray | None = None
    unwrapped: bool = False
    potential_energy: np.ndarray | None = None
    source: str = "<memory>"
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.numbers = np.asarray(self.numbers, dtype=np.int64)
        self.masses = np.asarray(self.masses, dtype=np.float64)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        n_frames, n_atoms = self.positions.shape[:2] if self.positions.ndim == 3 else (0, 0)
        if self.positions.ndim != 3 or self.positions.shape[2] != 3 or n_frames == 0:
            raise EvaluationError(f"{self.source}: positions must have shape (frames, atoms, 3), "
                                  f"got {self.positions.shape}")
        cells = np.asarray(self.cells, dtype=np.float64)
        self.cells = np.broadcast_to(cells, (n_frames, 3, 3)).copy() if cells.shape == (3, 3) else cells
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        if self.numbers.shape != (n_atoms,) or self.masses.shape != (n_atoms,):
            raise EvaluationError(f"{self.source}: numbers and masses need one entry per atom ({n_atoms})")
        if self.cells.shape != (n_frames, 3, 3):
            raise EvaluationError(f"{self.source}: cells must be (3, 3) or (frames, 3, 3), got {self.cells.shape}")
        if not self.pbc.all() or (np.abs(np.linalg.det(self.cells)) < 1e-9).any():
            raise EvaluationError(f"{self.source}: evaluation needs a fully periodic 3D cell in every frame "
                                  f"(pbc={self.pbc.tolist()})")
        for name in ("velocities", "images"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64 if name == "velocities" else np.int64)
                if value.shape != self.positions.shape:
                    raise EvaluationError(f"{self.source}: {name} shape {value.shape} differs from positions "
                                          f"{self.positions.shape}")
                setattr(self, name, value)
        if self.potential_energy is not None:
            self.potential_energy = np.asarray(self.potential_energy, dtype=np.float64).reshape(n_frames)
        if not (np.isfinite(self.interval_fs) and self.interval_fs > 0):
            raise EvaluationError(f"{self.source}: the time between frames must be a positive number of fs, "
                                  f"got {self.interval_fs!r}")
        self.interval_fs = float(self.interval_fs)

    # ------------------------------------------------------------------ shape and species
    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    @property
    def times_fs(self) -> np.ndarray:
        return np.arange(self.n_frames) * self.interval_fs

    @property
    def duration_fs(self) -> float:
        return (self.n_frames - 1) * self.interval_fs

    @property
    def species(self) -> list[int]:
        """Atomic numbers present, ascending (the order of every per-species table)."""
        return [int(z) for z in np.unique(self.numbers)]

    def species_counts(self) -> dict[str, int]:
        return {chemical_symbols[z]: int((self.numbers == z).sum()) for z in self.species}

    @property
    def volumes(self) -> np.ndarray:
        return np.abs(np.linalg.det(self.cells))

    # ------------------------------------------------------------------ requirements
    def require_velocities(self, what: str) -> np.ndarray:
        if self.velocities is None:
            raise EvaluationError(
                f"{self.source}: the frames have no velocities, which {what} needs; save them "
                "(ASE: atoms with momenta, as MD writes them; LAMMPS: dump ... vx vy vz)")
        return self.velocities

    def require_frames(self, minimum: int, what: str) -> None:
        if self.n_frames < minimum:
            raise EvaluationError(f"{self.source}: {self.n_frames} frame(s), but {what} needs at least {minimum}; "
                                  "save frames more often or run longer")

    # ------------------------------------------------------------------ positions for diffusion
    def unwrapped_positions(self) -> np.ndarray:
        """Continuous positions (Å): from image flags, as saved when unwrapped, else minimum image.

        Minimum-image unwrapping adds to each frame the shortest periodic displacement since the
        previous one, which is right while no atom moves more than half a cell width between frames.
        """
        if self.unwrapped:
            return self.positions
        if self.images is not None:
            return self.positions + np.einsum("fni,fij->fnj", self.images.astype(np.float64), self.cells)
        steps = np.diff(self.positions, axis=0)
        if np.allclose(self.cells, self.cells[0]):
            mic, _ = find_mic(steps.reshape(-1, 3), self.cells[0], self.pbc)
            steps = mic.reshape(steps.shape)
        else:
            steps = np.stack([find_mic(d, c, self.pbc)[0] for d, c in zip(steps, self.cells[1:])])
        return np.concatenate([self.positions[:1], self.positions[:1] + np.cumsum(steps, axis=0)])

    def largest_step(self) -> float:
        """Largest displacement of an atom between consecutive frames (Å), after unwrapping."""
        if self.n_frames < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(self.unwrapped_positions(), axis=0), axis=2).max())

    def min_half_width(self) -> float:
        """Half the smallest distance between opposite cell faces over all frames (Å)."""
        inverse = np.linalg.inv(self.cells)
        widths = 1.0 / np.linalg.norm(inverse, axis=1)  # (F, 3): 1/|reciprocal row| per cell direction
        return float(0.5 * widths.min())

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_atoms(cls, frames, interval_fs: float, source: str = "<memory>") -> "Trajectory":
        """From a list of ASE Atoms (velocities from their momenta, energies from a stored calculator)."""
        frames = list(frames)
        if not frames:
            raise EvaluationError(f"{source}: no frames")
        first = frames[0]
        n = len(first)
        for k, atoms in enumerate(frames):
            if len(atoms) != n or not np.array_equal(atoms.numbers, first.numbers):
                raise EvaluationError(f"{source}: frame {k} has different atoms than frame 0 "
                                      "(evaluation needs the same atoms in the same order in every frame)")
        has_momenta = all(atoms.has("momenta") for atoms in frames)
        velocities = np.stack([a.get_velocities() for a in frames]) * FS if has_momenta else None
        energies = [_stored_energy(a) for a in frames]
        return cls(numbers=first.numbers, masses=first.get_masses(),
                   positions=np.stack([a.positions for a in frames]),
                   cells=np.stack([a.cell.array for a in frames]), interval_fs=interval_fs,
                   velocities=velocities, pbc=first.pbc,
                   potential_energy=None if any(e is None for e in energies) else np.array(energies),
                   source=source)

    def select(self, frames: slice) -> "Trajectory":
        """A sub-trajectory (every k-th frame multiplies the interval by k)."""
        step = frames.step or 1
        pick = lambda a: None if a is None else a[frames]  # noqa: E731
        return Trajectory(numbers=self.numbers, masses=self.masses, positions=self.positions[frames],
                          cells=self.cells[frames], interval_fs=self.interval_fs * step,
                          velocities=pick(self.velocities), pbc=self.pbc, images=pick(self.images),
                          unwrapped=self.unwrapped, potential_energy=pick(self.potential_energy),
                          source=self.source, warnings=list(self.warnings))


def _stored_energy(atoms) -> float | None:
    """The potential energy a file stored with the frame (ASE SinglePointCalculator), if any.

    A live calculator is ignored: its results belong to whichever atoms it computed last."""
    from ase.calculators.singlepoint import SinglePointCalculator

    calc = atoms.calc
    if not isinstance(calc, SinglePointCalculator) or "energy" not in calc.results:
        return None
    return float(calc.results["energy"])
