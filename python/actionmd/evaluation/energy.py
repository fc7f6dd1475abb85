"""Total energy under the reference potential: LAMMPS re-evaluates each saved frame.

A learned integrator conserves its own shadow Hamiltonian, not necessarily the true one; the honest
energy test is the reference potential (the very LAMMPS lines the training data came from) on the
saved positions, plus the kinetic energy of the saved velocities.
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from ase.calculators.lammps.coordinatetransform import Prism
from ase.data import atomic_numbers, chemical_symbols
from scipy import stats
from ..progress import progress_bar

from ..data.config import ConfigError, element_mass, load_config
from ..data.lammps_run import LammpsError, new_lammps, potentials_dir
from ..data.units import UNITS
from ..units import EV
from .molecules import water_molecules
from .trajectory import EvaluationError, Trajectory

MOLECULAR_STYLES = ("full", "molecular", "angle")  # with molecule IDs and angles (water needs both)
CHARGED_STYLES = ("charge", "full")


def load_system(system) -> dict:
    """A config (built-in name, YAML path or dict) reduced to what re-evaluation needs.

    A dict may be a whole config (e.g. the ``config_json`` of a dataset) or just ``units``,
    ``elements``, ``potential`` and optionally ``atom_style``, ``masses``, ``structure``.  A dict never
    names an ASE calculator (``engine: ase``): a calculator is code, built only from a config file the
    user passes (a data file's stored config is data); give the file, or ``calculator=`` to evaluate().
    """
    if isinstance(system, dict):
        if system.get("engine") == "ase":
            raise ConfigError("a system given as a mapping (such as a data file's stored config) cannot build an "
                              "ASE calculator, which is code; give the config file (--system CONFIG.yaml) or pass "
                              "calculator= to evaluate()")
        cfg = dict(system)
        missing = [k for k in ("units", "elements", "potential") if k not in cfg]
        if missing:
            raise ConfigError(f"system config is missing {missing} (give units, elements and potential lines)")
        if cfg["units"] not in UNITS:
            raise ConfigError(f"system units {cfg['units']!r} are not supported; use one of {sorted(UNITS)}")
        if isinstance(cfg["potential"], str) or not all(isinstance(x, str) for x in cfg["potential"]):
            raise ConfigError("system 'potential' must be a list of LAMMPS command lines")
        cfg.setdefault("atom_style", "atomic")
        cfg.setdefault("masses", {})
        cfg.setdefault("structure", {})
        return cfg
    return load_config(system)


def system_name(system) -> str:
    """A built-in name or path as given; for a dict, its built-in name or its first potential line."""
    if isinstance(system, dict):
        return str(system.get("system") or f"({system['potential'][0]}, ...)")
    return str(system)


def kinetic_energy(traj: Trajectory) -> np.ndarray:
    """Per-frame kinetic energy (eV) of the saved velocities."""
    v = traj.require_velocities("the kinetic (and total) energy")
    return 0.5 * np.einsum("n,fni,fni->f", traj.masses, v, v) / EV


def energy_summary(times_fs: np.ndarray, total_eV: np.ndarray, n_atoms: int) -> dict:
    """Drift = slope of a least-squares line through E_tot/N(t); fluctuation = RMS about that line.

    The slope's standard error assumes independent residuals, so for correlated samples it is a
    lower bound.
    """
    t_ps = np.asarray(times_fs) / 1000.0
    e = np.asarray(total_eV) / n_atoms
    fit = stats.linregress(t_ps, e)
    residual = e - (fit.intercept + fit.slope * t_ps)
    return {
        "drift_meV_per_atom_ps": 1000 * fit.slope,
        "drift_stderr_meV_per_atom_ps": 1000 * fit.stderr,
        "fluctuation_meV_per_atom": 1000 * residual.std(),
        "max_deviation_meV_per_atom": 1000 * np.abs(e - e[0]).max(),
        "mean_total_eV_per_atom": float(e.mean()),
    }


def calculator_energies(traj: Trajectory, calculator, progress: bool = True) -> np.ndarray:
    """Potential energies (eV) from any ASE calculator (e.g. actionmd.reference.PotentialCalculator)."""
    from ase import Atoms

    atoms = Atoms(numbers=traj.numbers, cell=traj.cells[0], pbc=traj.pbc, masses=traj.masses)
    atoms.calc = calculator
    out = np.empty(traj.n_frames)
    for k in progress_bar(range(traj.n_frames), desc="potential energy", enabled=progress, leave=False):
        atoms.cell = traj.cells[k]
        atoms.positions = traj.positions[k]
        out[k] = atoms.get_potential_energy()
    return out


def system_energies(traj: Trajectory, cfg: dict, name: str, progress: bool = True) -> tuple[np.ndarray, str]:
    """Potential energies (eV) under a loaded system (``load_system``), and where they come from: its ASE
    calculator (engine: ase) or its LAMMPS potential lines."""
    if cfg.get("engine") == "ase":
        from ..data.ase_engine import describe, make_calculator

        return (calculator_energies(traj, make_calculator(cfg["calculator"]), progress),
                f"ASE calculator {describe(cfg['calculator'])}, system {name}")
    return lammps_energies(traj, cfg, progress), f"LAMMPS, system {name}"


def lammps_energies(traj: Trajectory, system, progress: bool = True) -> np.ndarray:
    """Potential energy (eV) of every frame under the system's LAMMPS potential lines."""
    cfg = load_system(system)
    if cfg["atom_style"] not in ("atomic", "charge", *MOLECULAR_STYLES):
        raise EvaluationError(f"atom_style {cfg['atom_style']!r}: re-evaluation supports atomic, charge, and water "
                              f"in {', '.join(MOLECULAR_STYLES)}")
    types = _types(traj, cfg)
    with tempfile.TemporaryDirectory(prefix="actionmd-evaluate-") as work:
        charges = _type_charges(cfg, work) if cfg["atom_style"] in CHARGED_STYLES else None
        molecules = None
        if cfg["atom_style"] in MOLECULAR_STYLES:
            if sorted(cfg["elements"]) != ["H", "O"]:
                raise EvaluationError(
                    f"atom_style {cfg['atom_style']}: re-evaluation rebuilds bonds for water only (elements O, H); "
                    "other molecular systems would need their topology")
            molecules = water_molecules(traj.numbers, traj.positions[0], traj.cells[0])
        prisms = [Prism(cell) for cell in traj.cells]
        data = Path(work) / "frame0.data"
        triclinic = any(p.is_skewed() for p in prisms)
        data.write_text(_data_file(traj, cfg, types, charges, molecules, prisms[0], triclinic))
        lmp = _start(cfg, data)
        try:
            return _evaluate_frames(lmp, traj, prisms, triclinic, UNITS[cfg["units"]], progress)
        finally:
            lmp.close()


# ---------------------------------------------------------------------- LAMMPS set-up
def _command(lmp, line: str, what: str) -> None:
    try:
        lmp.command(line)
    except Exception as exc:  # LAMMPS raises a plain Exception carrying its message
        raise LammpsError(f"energy re-evaluation ({what}): LAMMPS rejected {line!r}:\n{exc}") from None


def _start(cfg: dict, data: Path):
    lmp = new_lammps()
    try:
        for line in (f"units {cfg['units']}", f"atom_style {cfg['atom_style']}", "atom_modify map yes",
                     "boundary p p p", f"read_data {data}"):
            _command(lmp, line, "set-up")
        for k, element in enumerate(cfg["elements"], start=1):
            _command(lmp, f"mass {k} {element_mass(cfg, element)!r}", "masses")
        _command(lmp, f"variable potentials_dir string {potentials_dir()}", "set-up")
        for line in cfg["potential"]:
            _command(lmp, line, "potential")
        for line in ("neigh_modify every 1 delay 0 check yes", "thermo_style custom step pe",
                     "thermo 1000000000"):
            _command(lmp, line, "set-up")
    except Exception:
        lmp.close()
        raise
    return lmp


def _types(traj: Trajectory, cfg: dict) -> np.ndarray:
    """LAMMPS type (1-based, the order of the system's ``elements``) of every atom."""
    elements = cfg["elements"]
    unknown = sorted({chemical_symbols[z] for z in traj.species} - set(elements))
    if unknown:
        raise EvaluationError(f"{traj.source}: element(s) {unknown} are not among the system's elements {elements}; "
                              "evaluate with the system the trajectory was made for (--system)")
    lookup = np.zeros(len(chemical_symbols), dtype=np.int64)
    lookup[[atomic_numbers[el] for el in elements]] = np.arange(1, len(elements) + 1)
    return lookup[traj.numbers]


def _type_charges(cfg: dict, work: str) -> np.ndarray:
    """Charge of each atom type (e), as the generator's structure assigns them (data files, water box)."""
    from ..data.lammps_run import structure_file

    n_types = len(cfg["elements"])
    if not any(kind in cfg.get("structure", {}) for kind in ("data_file", "file", "water_box")):
        return np.zeros(n_types)  # a lattice: charges, if any, come from the potential lines (set ...)
    path = structure_file(cfg, work)
    lmp = new_lammps()
    try:
        for line in (f"units {cfg['units']}", f"atom_style {cfg['atom_style']}", "atom_modify map yes",
                     f"read_data {path}"):
            _command(lmp, line, "charges of the structure")
        types = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).copy()
        q = np.ctypeslib.as_array(lmp.gather_atoms("q", 1, 1)).copy()
    finally:
        lmp.close()
    charges = np.zeros(n_types)
    for t in range(1, n_types + 1):
        values = np.unique(q[types == t])
        if len(values) > 1:
            raise EvaluationError(f"the system's structure gives atom type {t} several charges {values[:4]}; "
                                  "re-evaluation needs one charge per type")
        charges[t - 1] = values[0] if len(values) else 0.0
    return charges


def _data_file(traj, cfg, types, charges, molecules, prism, triclinic: bool) -> str:
    """LAMMPS data text for frame 0 (ASE's writer has no angles, which water needs)."""
    style = cfg["atom_style"]
    n = traj.n_atoms
    xhi, yhi, zhi, xy, xz, yz = map(float, prism.get_lammps_prism())
    x = prism.vector_to_lammps(traj.positions[0], wrap=True)
    lines = [f"actionmd evaluate: frame 0 of {traj.source}", "", f"{n} atoms", f"{len(cfg['elements'])} atom types"]
    if molecules is not None:
        lines += [f"{2 * len(molecules)} bonds", f"{len(molecules)} angles", "1 bond types", "1 angle types"]
    lines += ["", f"0.0 {xhi!r} xlo xhi", f"0.0 {yhi!r} ylo yhi", f"0.0 {zhi!r} zlo zhi"]
    if triclinic:
        lines.append(f"{xy!r} {xz!r} {yz!r} xy xz yz")
    lines += ["", f"Atoms # {style}", ""]
    integers = [np.arange(1, n + 1)]
    if style in MOLECULAR_STYLES:
        mol = np.zeros(n, dtype=np.int64)
        if molecules is not None:
            mol[molecules.ravel()] = np.repeat(np.arange(1, len(molecules) + 1), 3)
        integers.append(mol)
    integers.append(types)
    floats = [charges[types - 1][:, None]] if style in CHARGED_STYLES else []
    box = np.array([[xhi, xy, xz], [0.0, yhi, yz], [0.0, 0.0, zhi]])  # columns: the LAMMPS cell vectors
    images = [] if molecules is None else [_whole_molecule_images(x, box, molecules)]
    body = np.column_stack([*integers, *floats, x, *images])
    table = io.StringIO()
    np.savetxt(table, body, fmt=["%d"] * len(integers) + ["%.10g"] * len(floats) + ["%.17g"] * 3
               + ["%d"] * 3 * len(images))
    lines.append(table.getvalue())
    if molecules is not None:
        m = len(molecules)
        bonds = np.column_stack([np.arange(1, 2 * m + 1), np.ones(2 * m, int),
                                 np.repeat(molecules[:, 0], 2) + 1, molecules[:, 1:].ravel() + 1])
        angles = np.column_stack([np.arange(1, m + 1), np.ones(m, int), molecules[:, 1] + 1,
                                  molecules[:, 0] + 1, molecules[:, 2] + 1])
        for title, rows in (("Bonds", bonds), ("Angles", angles)):
            table = io.StringIO()
            np.savetxt(table, rows, fmt="%d")
            lines += [title, "", table.getvalue()]
    return "\n".join(lines) + "\n"


def _whole_molecule_images(x: np.ndarray, box: np.ndarray, molecules: np.ndarray) -> np.ndarray:
    """Image flags (N, 3) that keep each molecule whole: every H at the periodic image nearest its O.
    Without them LAMMPS warns of inconsistent image flags, and unwrapped dumps split molecules."""
    fractional = np.linalg.solve(box, x.T).T
    images = np.zeros(x.shape, dtype=np.int64)
    oxygen = molecules[:, :1]
    images[molecules[:, 1:]] = np.rint(fractional[oxygen] - fractional[molecules[:, 1:]]).astype(np.int64)
    return images


def _evaluate_frames(lmp, traj: Trajectory, prisms, triclinic: bool, units, progress: bool) -> np.ndarray:
    import ctypes

    out = np.empty(traj.n_frames)
    previous = None
    for k in progress_bar(range(traj.n_frames), desc=f"LAMMPS energies {Path(traj.source).name}", enabled=progress,
                  leave=False):
        box = prisms[k].get_lammps_prism()
        if previous is not None and not np.allclose(box, previous, rtol=0, atol=1e-12):
            xhi, yhi, zhi, xy, xz, yz = map(float, box)
            tilt = f" xy final {xy!r} xz final {xz!r} yz final {yz!r}" if triclinic else ""
            _command(lmp, f"change_box all x final 0 {xhi!r} y final 0 {yhi!r} z final 0 {zhi!r}{tilt} units box",
                     f"cell of frame {k}")
        previous = box
        x = np.ascontiguousarray(prisms[k].vector_to_lammps(traj.positions[k], wrap=True).ravel())
        lmp.scatter_atoms("x", 1, 3, x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        _command(lmp, "run 0 post no", f"frame {k}")
        out[k] = units.energy_to_model(float(lmp.get_thermo("pe")))
    if not np.isfinite(out).all():
        raise EvaluationError(f"{traj.source}: LAMMPS gave a non-finite energy for frame "
                              f"{int(np.flatnonzero(~np.isfinite(out))[0])} (overlapping atoms?)")
    return out
