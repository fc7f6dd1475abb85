"""What the reference protocol is independent of the engine that runs it (LAMMPS: lammps_run.py, ASE:
ase_engine.py): seeds, lattice sites and compositions, the Ornstein-Uhlenbeck refresh, the errors."""
from __future__ import annotations

import numpy as np

SEED_EQ_VELOCITY, SEED_EQ_THERMOSTAT, SEED_COMPOSITION, SEED_SEGMENT, SEED_STRUCTURE = range(5)
OU_EVERY = 10  # steps between Ornstein-Uhlenbeck velocity refreshes (thermostat: ou)
BLEW_UP = ("The trajectory blew up: reduce protocol.dt, or check the potential, the structure "
           "(overlapping atoms) and the temperature.")


class EngineError(RuntimeError):
    """A run that failed (an engine's error, a trajectory that blew up); the message says where and why.

    ``one_rank``: raised on this MPI rank only, so the other ranks did not see it."""

    one_rank = False


def seed(base: int, *key: int) -> int:
    """A seed every LAMMPS RNG accepts (1 .. 9e8, Marsaglia) from the config seed and a key."""
    state = np.random.SeedSequence(base, spawn_key=key).generate_state(1)[0]
    return int(state % 899_999_999) + 1


def lattice_constant(cfg: dict, composition: dict | None) -> float:
    """``structure.a``, or Vegard's law over the composition when ``a`` maps elements to constants."""
    a = cfg["structure"]["a"]
    if isinstance(a, dict):
        comp = composition or {cfg["elements"][0]: 1.0}
        a = sum(comp.get(el, 0.0) * a[el] for el in cfg["elements"])
    return a


def site_order(x: np.ndarray) -> np.ndarray:
    """Lattice sites in (z, y, x) order: the same numbering whoever made the sites (LAMMPS ranks, ASE)."""
    key = np.round(x, 6)
    return np.lexsort((key[:, 0], key[:, 1], key[:, 2]))


def composition_types(composition: dict, elements: list[str], n: int, seed: int) -> np.ndarray:
    """Types 1.. (``elements`` order) with exact counts for the fractions, at random sites from ``seed``."""
    fractions = np.array([composition[el] for el in elements])
    counts = np.floor(fractions * n + 0.5).astype(int)
    counts[np.argmax(counts)] += n - counts.sum()
    types = np.repeat(np.arange(1, len(counts) + 1, dtype=np.int32), counts)
    return types[np.random.default_rng(seed).permutation(n)]


def ou_refresh(v: np.ndarray, masses: np.ndarray, sigma: np.ndarray, c: float, rng) -> np.ndarray:
    """The exact O step of a Langevin splitting, v <- c v + sqrt(1 - c²) σ ξ (σ² = kT/m per atom), then the
    centre-of-mass velocity removed; ``masses`` and ``sigma`` are (N, 1)."""
    v = c * v + np.sqrt(1.0 - c * c) * sigma * rng.standard_normal((len(masses), 3))
    v -= (masses * v).sum(axis=0) / masses.sum()
    return v


class SerialComm:
    """The part of an mpi4py communicator the generator uses, for one process (the ASE engine)."""

    rank, size = 0, 1

    def bcast(self, value, root=0):
        return value

    def allreduce(self, value, op=None):
        return value
