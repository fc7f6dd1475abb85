"""The ASE engine of ``actionmd generate``: any ASE calculator (EMT, CHGNet, MACE, ...) as the reference.

generate.py runs the protocol; this module runs its phases with ASE: velocity Verlet
(ase.md.verlet.VelocityVerlet), the thermostats ``csvr`` (ase.md.bussi.Bussi) and ``langevin``
(ase.md.langevin.Langevin), each with ase.constraints.FixCom while it runs, and ``ou`` (the
Ornstein-Uhlenbeck refresh of protocol.py, as the LAMMPS engine does it).  Every phase starts
from fresh Atoms made from the exact stored state (positions, momenta, cell, types) and a reset
calculator, with its random numbers from a Generator seeded for that phase, so a resumed run is
bit-for-bit the uninterrupted one (for a deterministic calculator).

The calculator is code: it is built only from the config the user runs (``calculator:``), never
from the config stored in a data file.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .config import ConfigError, element_mass
from .lammps_run import Frame
from .protocol import OU_EVERY, EngineError, SerialComm, composition_types, lattice_constant, ou_refresh, site_order
from .units import ASE_UNITS

MAX_STEP_DISPLACEMENT = 1.0  # Å in one step: beyond it the run is taken as blown up
BLEW_UP = "the trajectory blew up: reduce protocol.dt, or check the calculator, the structure (overlapping atoms) " \
          "and the temperature"


@dataclass
class AseState:
    """Exact ASE state needed to continue a trajectory (ASE units, atoms in stored order)."""

    NOTE: ClassVar[str] = ("exact ASE state (positions Å, unwrapped; momenta in ASE units u·Å/(Å·(u/eV)^½); "
                           "cell Å; types 1.. in 'elements' order) for resuming; not training data")
    x: np.ndarray  # (N, 3) float64
    momenta: np.ndarray  # (N, 3) float64
    cell: np.ndarray  # (3, 3) float64, rows are the lattice vectors
    type: np.ndarray  # (N,) int32


def describe(spec: dict) -> str:
    """A calculator spec in a few words, for messages."""
    return spec["factory"] if "factory" in spec else os.path.basename(spec["file"])


# calculators that actionmd installs as optional extras (setup.py extras_require): package -> extra
EXTRAS = {"chgnet": "chgnet"}


def make_calculator(spec: dict):
    """Build the ASE calculator of a resolved ``calculator:`` config; a one-line ConfigError names the fix.

    Runs code (the factory's module, or the ``file``): call it only for a config the user gave."""
    kwargs = spec.get("kwargs") or {}
    if "factory" in spec:
        module_name, _, name = spec["factory"].partition(":")
        where = f"calculator.factory {spec['factory']!r}"
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = EXTRAS.get(module_name.split(".")[0])
            install = f"`pip install actionmd[{extra}]`" if extra else "install the package that provides it"
            raise ConfigError(f"{where}: cannot import module {module_name!r} ({_one_line(exc)}); {install}, "
                              "or fix the module path ('package.module:Name')") from None
        factory = getattr(module, name, None)
        if factory is None:
            raise ConfigError(f"{where}: module {module_name!r} has no {name!r}; check the name after the colon")
        if not callable(factory):
            raise ConfigError(f"{where}: {name!r} is a {type(factory).__name__}, not a calculator class or function")
    else:
        path = spec["file"]
        where = f"calculator.file {path!r}"
        if not os.path.isfile(path):
            raise ConfigError(f"{where} does not exist; give the path of a Python file that defines make_calculator()")
        module_name = "actionmd_calculator_" + hashlib.sha256(path.encode()).hexdigest()[:12]
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"{where}: running the file failed: {_one_line(exc)}") from None
        factory = getattr(module, "make_calculator", None)
        if not callable(factory):
            raise ConfigError(f"{where} defines no make_calculator(); add def make_calculator(**kwargs) that "
                              "returns an ASE calculator")
    try:
        calc = factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"{where}: making the calculator with kwargs {kwargs} failed: {_one_line(exc)}") from None
    if not (callable(getattr(calc, "get_forces", None)) and callable(getattr(calc, "get_potential_energy", None))):
        raise ConfigError(f"{where} gave a {type(calc).__name__}, not an ASE calculator (no get_forces and "
                          "get_potential_energy)")
    return calc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _mpi_size() -> int:
    """The size of an MPI job this process belongs to (0 outside one), from the launcher's environment."""
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


class AseEngine:
    """Runs the phases of the reference protocol with an ASE calculator, in this process."""

    state_class = AseState
    units = ASE_UNITS
    max_op = None

    def __init__(self, cfg: dict):
        if _mpi_size() > 1:
            raise ConfigError("engine: ase runs in one process; spread conditions over processes with "
                              "--part K/N instead of mpirun")
        self.cfg = cfg
        self.comm = SerialComm()
        self.proto = cfg["protocol"]
        self.dt = ASE_UNITS.dt_to_lammps(self.proto["dt"])  # ASE time units
        self.damp = ASE_UNITS.dt_to_lammps(self.proto["thermostat_damp"])
        self.type_masses = np.array([element_mass(cfg, el) for el in cfg["elements"]])
        self._calc = None

    def metadata(self) -> dict:
        import ase

        return {"ase_version": ase.__version__, "calculator_json": json.dumps(self.cfg["calculator"], sort_keys=True)}

    @contextmanager
    def session(self, on_rank0):
        yield

    @property
    def calc(self):
        if self._calc is None:  # built when a phase needs it: a finished file makes no calculator
            self._calc = make_calculator(self.cfg["calculator"])
        return self._calc

    # ------------------------------------------------------------------ phases
    def equilibrate(self, condition: dict, seeds: dict, tick) -> tuple[AseState, dict]:
        """Build, draw velocities, thermalize; the state and what the condition's group stores."""
        from ase.md.velocitydistribution import Stationary, thermalize_momenta

        where = f"condition {condition['index']} (T={condition['temperature']:g} K), equilibration"
        types, positions, cell = self._structure(condition["composition"], seeds["composition"])
        atoms = self._atoms(types, positions, cell, None)
        forces = self._first_forces(atoms, where)
        thermalize_momenta(atoms, condition["temperature"], rng=np.random.default_rng(seeds["velocity"]))
        Stationary(atoms)
        self._thermalize(atoms, forces, condition["temperature"], seeds["thermostat"],
                         self.proto["equilibration_steps"], tick, where)
        state = self._state(atoms, types)
        static = {"atomic_numbers": atoms.numbers.copy(), "masses": atoms.get_masses(), "types": types,
                  "origin": np.zeros(3), "cell": state.cell,
                  "force_to_acceleration": ASE_UNITS.force_to_acceleration(1.0)}
        return state, static

    def segment(self, condition: dict, k: int, seeds: dict, state: AseState, segment_seed: int, tick):
        """Decorrelate from ``state`` and record one NVE segment: (frames, final state, (origin, cell, masses))."""
        from ase.md.verlet import VelocityVerlet

        where = f"condition {condition['index']} (T={condition['temperature']:g} K), segment {k}"
        atoms = self._atoms(state.type, state.x, state.cell, state.momenta)
        forces = self._first_forces(atoms, where)
        forces = self._thermalize(atoms, forces, condition["temperature"], segment_seed,
                                  self.proto["decorrelation_steps"], tick, f"{where} decorrelation")
        every, steps = self.proto["record_every"], self.proto["segment_steps"]
        dyn = VelocityVerlet(atoms, self.dt)
        frames = [self._frame(atoms, forces, f"{where} NVE", 0)]
        for i in range(steps // every):
            forces = self._steps(atoms, dyn, forces, every, f"{where} NVE", i * every)
            frames.append(self._frame(atoms, forces, f"{where} NVE", (i + 1) * every))
            tick(every)
        return frames, self._state(atoms, state.type), (np.zeros(3), state.cell, atoms.get_masses())

    # ------------------------------------------------------------------ building blocks
    def _structure(self, composition: dict | None, composition_seed: int):
        """Types (1.., ``elements`` order), positions and cell of the configured structure."""
        import ase.io
        from ase.build import bulk
        from ase.data import atomic_numbers

        from .structures import check_atoms, crystal_atoms

        cfg, st = self.cfg, self.cfg["structure"]
        elements = cfg["elements"]
        if "lattice" in st:
            name = st["lattice"]
            a = lattice_constant(cfg, composition)
            cell = bulk(elements[0], name, a=a, orthorhombic=True) if name == "hcp" else \
                bulk(elements[0], name, a=a, cubic=True)
            atoms = cell.repeat(st["repeat"])
            atoms = atoms[site_order(atoms.positions)]  # sites numbered as the LAMMPS engine numbers them
            source = f"lattice {name}"
        elif "crystal" in st:
            atoms, source = crystal_atoms(st), f"crystal {st['crystal']}"
        elif "file" in st:
            atoms = ase.io.read(st["file"], format=st.get("format")).repeat(st["repeat"])
            source = f"structure file {st['file']!r}"
        else:  # data_file (water_box is refused by the config)
            atoms = ase.io.read(st["data_file"], format="lammps-data", atom_style=cfg["atom_style"],
                                Z_of_type={i + 1: atomic_numbers[el] for i, el in enumerate(elements)})
            source = f"data file {st['data_file']!r}"
        check_atoms(atoms, elements, source)
        symbols = atoms.get_chemical_symbols()
        types = np.array([elements.index(s) + 1 for s in symbols], dtype=np.int32)
        if composition is not None:
            types = composition_types(composition, elements, len(atoms), composition_seed)
        return types, atoms.get_positions(), atoms.cell.array.copy()

    def _atoms(self, types, positions, cell, momenta):
        """Fresh Atoms with the calculator reset: each phase computes as a resumed one would."""
        from ase import Atoms
        from ase.data import atomic_numbers

        numbers = np.array([atomic_numbers[self.cfg["elements"][t - 1]] for t in types])
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True,
                      masses=self.type_masses[np.asarray(types) - 1])
        if momenta is not None:
            atoms.set_momenta(momenta, apply_constraint=False)
        if callable(getattr(self.calc, "reset", None)):
            self.calc.reset()
        atoms.calc = self.calc
        return atoms

    def _first_forces(self, atoms, where: str) -> np.ndarray:
        """The calculator's first energy and forces on a phase's structure: what it cannot do is said here."""
        species = sorted(set(atoms.get_chemical_symbols()))
        name = describe(self.cfg["calculator"])
        from ase.calculators.calculator import PropertyNotImplementedError

        try:
            forces = atoms.get_forces()
            energy = atoms.get_potential_energy()
        except PropertyNotImplementedError as exc:
            raise EngineError(f"{where}: the calculator {name} does not compute energy and forces ({_one_line(exc)}); "
                              "molecular dynamics needs a calculator that implements 'energy' and 'forces'") from None
        except Exception as exc:  # a calculator's own error: NotImplementedError for an element EMT lacks, ...
            raise EngineError(f"{where}: the calculator {name} failed on the structure (species {', '.join(species)}): "
                              f"{_one_line(exc)}; use a calculator that covers these species and conditions") from None
        if forces is None or np.shape(forces) != (len(atoms), 3):
            raise EngineError(f"{where}: the calculator {name} returned no forces (got {np.shape(forces)} for "
                              f"{len(atoms)} atoms); it must implement 'forces'")
        if not np.isfinite(forces).all() or not np.isfinite(energy):
            raise EngineError(f"{where}, step 0: the calculator {name} returned non-finite energy or forces on the "
                              f"initial structure (species {', '.join(species)}); check the structure "
                              "(overlapping atoms) and the calculator")
        return forces

    def _thermalize(self, atoms, forces, temperature: float, seed: int, steps: int, tick, where: str) -> np.ndarray:
        """``steps`` steps with the configured thermostat (random numbers from ``seed``); returns the forces."""
        from ase.constraints import FixCom
        from ase.md.verlet import VelocityVerlet

        if steps == 0:
            return forces
        rng = np.random.default_rng(seed)
        kind = self.proto["thermostat"]
        where = f"{where} ({kind} thermostat)"
        if kind == "ou":
            from ase import units

            masses = atoms.get_masses()[:, None]
            sigma = np.sqrt(units.kB * temperature / masses)
            dyn = VelocityVerlet(atoms, self.dt)
            done = 0
            while done < steps:
                n = min(OU_EVERY, steps - done)
                forces = self._steps(atoms, dyn, forces, n, where, done)
                v = ou_refresh(atoms.get_momenta() / masses, masses, sigma, np.exp(-n * self.dt / self.damp), rng)
                atoms.set_momenta(v * masses, apply_constraint=False)
                done += n
                tick(n)
            return forces
        atoms.set_constraint(FixCom())  # ASE's way to hold the centre of mass (Langevin's fixcm is deprecated)
        try:
            if kind == "csvr":
                from ase.md.bussi import Bussi

                dyn = Bussi(atoms, self.dt, temperature_K=temperature, taut=self.damp, rng=rng)
            else:
                from ase.md.langevin import Langevin

                dyn = Langevin(atoms, self.dt, temperature_K=temperature, friction=1.0 / self.damp, fixcm=False,
                               rng=rng)
            forces = atoms.get_forces(md=True)
            chunk, done = max(1, steps // 20), 0
            while done < steps:
                n = min(chunk, steps - done)
                forces = self._steps(atoms, dyn, forces, n, where, done)
                done += n
                tick(n)
        finally:
            atoms.set_constraint()
        return atoms.get_forces()

    def _steps(self, atoms, dyn, forces, n: int, where: str, done: int) -> np.ndarray:
        """``n`` steps of ``dyn``; a non-finite force or an absurd move stops the run, naming the step."""
        for i in range(n):
            before = atoms.get_positions()
            try:
                forces = dyn.step(forces)
            except Exception as exc:  # the calculator's: out of memory, a lost server, ...
                raise EngineError(f"{where}, step {done + i + 1}: the calculator {describe(self.cfg['calculator'])} "
                                  f"failed: {_one_line(exc)}") from exc
            moved = np.sqrt(((atoms.positions - before) ** 2).sum(axis=1)).max()
            if not np.isfinite(forces).all():
                raise EngineError(f"{where}, step {done + i + 1}: non-finite forces (NaN/inf); {BLEW_UP}")
            if not moved <= MAX_STEP_DISPLACEMENT:
                raise EngineError(f"{where}, step {done + i + 1}: an atom moved {moved:.3g} Å in one step of "
                                  f"{self.proto['dt']:g} fs (more than {MAX_STEP_DISPLACEMENT:g} Å); {BLEW_UP}")
        return forces

    def _frame(self, atoms, forces, where: str, step: int) -> Frame:
        energy = atoms.get_potential_energy()
        if not np.isfinite(energy):
            raise EngineError(f"{where}, step {step}: non-finite potential energy; {BLEW_UP}")
        return Frame(x=atoms.get_positions(), v=atoms.get_velocities(), f=np.array(forces, dtype=np.float64),
                     image=np.zeros((len(atoms), 3), dtype=np.int32), pe=float(energy))

    @staticmethod
    def _state(atoms, types) -> AseState:
        return AseState(x=atoms.get_positions(), momenta=atoms.get_momenta(), cell=atoms.cell.array.copy(),
                        type=np.asarray(types, dtype=np.int32))
