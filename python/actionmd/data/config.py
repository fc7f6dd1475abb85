"""Reference-data configs: loading, built-in systems, overrides, validation.

A config is a YAML mapping (see docs/data.md).  It may name a built-in system
(``system: cuni``); its own keys are then merged over the built-in's (mappings merge,
everything else replaces).  ``resolve_config`` returns a plain, validated dict in which
every default is filled in, so that the dict alone determines the generated data.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import yaml

from .. import strict_yaml
from .units import UNITS

SYSTEMS_DIR = Path(__file__).resolve().parent.parent / "systems"

TOP_KEYS = {
    "system", "description", "engine", "units", "atom_style", "elements", "masses", "structure",
    "potential", "calculator", "temperatures", "compositions", "protocol", "seed", "output",
}
ENGINES = ("lammps", "ase")
REQUIRED = {"lammps": ["units", "elements", "structure", "potential", "temperatures", "protocol"],
            "ase": ["elements", "structure", "calculator", "temperatures", "protocol"]}
CALCULATOR_KEYS = {"factory", "file", "kwargs", "sha256"}
ASE_LATTICES = ("fcc", "bcc", "sc", "diamond", "hcp")  # LAMMPS lattice styles ase.build.bulk also builds
PROTOCOL_DEFAULTS = {
    "thermostat": "csvr",
    "thermostat_damp": None,  # fs; default 100 dt
    "equilibration_steps": 1000,
    "decorrelation_steps": 500,
    "segments": 4,
    "segment_steps": 100,
    "record_every": 1,
}
THERMOSTATS = ("csvr", "ou", "langevin")
STRUCTURE_KINDS = ("lattice", "crystal", "data_file", "file", "water_box")
STRUCTURE_KEYS = {
    "lattice": {"lattice", "a", "repeat"},
    "crystal": {"crystal", "species", "a", "c", "repeat"},
    "data_file": {"data_file", "sha256"},
    "file": {"file", "format", "repeat", "sha256"},
    "water_box": {"water_box"},
}
# Keys whose change does not invalidate finished data: more segments extend a file.
# File paths are not hashed either: the file's sha256 is, so a moved project still resumes.
NOT_HASHED = {
    ("protocol", "segments"), ("output",), ("description",),
    ("structure", "data_file"), ("structure", "file"), ("calculator", "file"),
}


class ConfigError(ValueError):
    """A config that cannot be run; the message says what is wrong and how to fix it."""


def builtin_systems() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SYSTEMS_DIR.glob("*.yaml"))}


def _read_yaml(path: Path) -> dict:
    try:
        data = strict_yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict:
    """``a.b=value`` (value parsed as YAML) -> ``{"a": {"b": value}}``."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set structure.repeat=[2,2,2]")
    key, value = text.split("=", 1)
    try:
        parsed = strict_yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {exc}") from None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def load_config(source: str | Path, overrides: list[str] | None = None) -> dict:
    """Read CONFIG (a YAML path or a built-in name), apply ``--set`` overrides, validate."""
    systems = builtin_systems()
    path = Path(source)
    if path.is_file():
        raw = _read_yaml(path)
        base_dir = path.resolve().parent
    elif str(source) in systems:
        raw = {"system": str(source)}
        base_dir = Path.cwd()
    else:
        raise ConfigError(
            f"{source!r} is neither a config file nor a built-in system; "
            f"built-in systems: {', '.join(systems)}"
        )
    for text in overrides or []:
        raw = _merge(raw, parse_override(text))
    return resolve_config(raw, base_dir)


def resolve_config(raw: dict, base_dir: Path | str = ".") -> dict:
    base_dir = Path(base_dir)
    cfg = copy.deepcopy(raw)
    name = cfg.get("system")
    if name is not None:
        systems = builtin_systems()
        if name not in systems:
            raise ConfigError(
                f"unknown built-in system {name!r}; valid names: {', '.join(systems)}"
            )
        builtin = _read_yaml(systems[name])
        if any(kind in cfg.get("structure", {}) for kind in STRUCTURE_KINDS):
            builtin.pop("structure", None)  # a structure of one's own replaces, never merges
        if cfg.get("engine") == "ase":  # the built-in's LAMMPS lines give way to the config's calculator
            builtin.pop("potential", None)
        cfg = _merge(builtin, {k: v for k, v in cfg.items() if k != "system"})
        cfg["system"] = name

    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(unknown)}; allowed keys: {sorted(TOP_KEYS)}"
        )
    engine = cfg.setdefault("engine", "lammps")
    if engine not in ENGINES:
        raise ConfigError(f"'engine' must be one of {list(ENGINES)}, got {engine!r}")
    if engine == "ase":
        _check_ase_engine(cfg)
    elif "calculator" in cfg:
        raise ConfigError("'calculator' is for engine: ase; add engine: ase to run it, or remove 'calculator' "
                          "to run the LAMMPS 'potential' lines")
    missing = [k for k in REQUIRED[engine] if k not in cfg]
    if missing:
        raise ConfigError(
            f"config is missing required key(s) {missing}; see docs/data.md for the format "
            f"or start from a built-in system (system: {next(iter(builtin_systems()), 'cuni')})"
        )

    units = cfg["units"]
    if units == "lj":
        raise ConfigError(
            "units lj is not supported: reference data must carry physical units "
            "(model units Å, fs, u, eV); use 'units metal' or 'units real'"
        )
    if units not in UNITS:
        raise ConfigError(f"units {units!r} is not supported; use one of {sorted(UNITS)}")
    cfg.setdefault("atom_style", "atomic")

    elements = cfg["elements"]
    if isinstance(elements, str):
        elements = cfg["elements"] = [elements]
    from ase.data import atomic_numbers

    if not isinstance(elements, list) or not elements:
        raise ConfigError("'elements' must be a list of chemical symbols, one per LAMMPS atom type")
    for el in elements:
        if el not in atomic_numbers:
            raise ConfigError(f"'elements': {el!r} is not a chemical symbol")
    masses = cfg.setdefault("masses", {})
    if not isinstance(masses, dict) or any(el not in elements for el in masses):
        raise ConfigError("'masses' must map elements listed in 'elements' to masses in u")

    if engine == "lammps":
        _check_potential(cfg)
    else:
        _check_calculator(cfg, base_dir)
    _check_structure(cfg, base_dir)
    cfg["temperatures"] = _check_temperatures(cfg["temperatures"])
    cfg["compositions"] = _check_compositions(cfg.get("compositions"), elements, cfg["structure"])
    cfg["protocol"] = _check_protocol(cfg["protocol"])
    seed = cfg.setdefault("seed", 12345)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"'seed' must be a non-negative integer, got {seed!r}")
    return cfg


def _check_potential(cfg: dict) -> None:
    pot = cfg["potential"]
    if isinstance(pot, str):
        pot = [line for line in pot.splitlines()]
    if not isinstance(pot, list) or not all(isinstance(x, str) for x in pot):
        raise ConfigError("'potential' must be a list of LAMMPS command lines (strings)")
    pot = [line.strip() for line in pot if line.strip() and not line.strip().startswith("#")]
    if not pot:
        raise ConfigError("'potential' has no LAMMPS commands; give at least pair_style and pair_coeff")
    # The generator owns these: integration, thermostats, output (thermo_modify norm would
    # change the meaning of the stored energies), and the structure.
    forbidden = ("units", "atom_style", "run", "minimize", "fix", "unfix", "velocity", "timestep",
                 "read_data", "create_box", "create_atoms", "thermo", "thermo_style", "thermo_modify",
                 "reset_timestep", "clear")
    for line in pot:
        word = line.split()[0]
        if word in forbidden:
            raise ConfigError(
                f"'potential' line {line!r}: {word!r} is managed by the generator and may not "
                "appear among the potential lines (set it through the config keys instead)"
            )
    cfg["potential"] = pot


def _check_ase_engine(cfg: dict) -> None:
    """engine: ase computes in ASE units (eV, Å) with the config's calculator: no LAMMPS lines, no other units."""
    if "potential" in cfg:
        raise ConfigError("'potential' holds LAMMPS lines, which engine: ase does not run; give the ASE calculator as "
                          "calculator: {factory: 'ase.calculators.emt:EMT'} (or {file: my_calc.py}), or use engine: lammps")
    units = cfg.setdefault("units", "metal")
    if units != "metal":
        raise ConfigError(f"engine: ase computes in ASE units (eV, Å), so 'units' {units!r} does not apply; "
                          "remove 'units' (or set units: metal)")
    st = cfg.get("structure")
    if isinstance(st, dict) and "water_box" in st:
        raise ConfigError("'structure.water_box' builds a LAMMPS molecular topology (bonds, angles) that an ASE "
                          "calculator does not use; give the water as a structure file (file: water.xyz) for engine: ase")
    if isinstance(st, dict) and "lattice" in st and st["lattice"] not in ASE_LATTICES:
        raise ConfigError(f"'structure.lattice' {st['lattice']!r}: engine: ase builds the lattices {list(ASE_LATTICES)}; "
                          "give other structures as a crystal or a structure file")


def _check_calculator(cfg: dict, base_dir: Path) -> None:
    """``calculator: {factory: 'module:Name', kwargs: {...}}`` or ``{file: my_calc.py}`` (defines
    ``make_calculator(**kwargs)``); a file is hashed by content (its ``sha256``), not by path."""
    calc = cfg["calculator"]
    example = "calculator: {factory: 'ase.calculators.emt:EMT', kwargs: {}} or calculator: {file: my_calc.py}"
    if not isinstance(calc, dict) or ("factory" in calc) == ("file" in calc):
        raise ConfigError(f"'calculator' needs exactly one of 'factory' or 'file', e.g. {example}")
    extra = set(calc) - CALCULATOR_KEYS
    if extra:
        raise ConfigError(f"'calculator' has unknown key(s) {sorted(extra)}; allowed: factory or file, and kwargs")
    kwargs = calc.setdefault("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ConfigError(f"'calculator.kwargs' must be a mapping of keyword arguments, got {kwargs!r}")
    if "factory" in calc:
        factory = calc["factory"]
        module, _, name = factory.partition(":") if isinstance(factory, str) else ("", "", "")
        if not module or not name:
            raise ConfigError(f"'calculator.factory' must be 'package.module:Name' (a class or function that "
                              f"returns an ASE calculator), e.g. 'ase.calculators.emt:EMT'; got {factory!r}")
        calc.pop("sha256", None)
        return
    path = Path(str(calc["file"]))
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if not path.is_file():
        raise ConfigError(f"'calculator.file': file {str(path)!r} does not exist (a Python file that defines "
                          "make_calculator(), relative to the config file)")
    calc["file"] = str(path)
    calc["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()


def _check_structure(cfg: dict, base_dir: Path) -> None:
    st = cfg["structure"]
    if not isinstance(st, dict):
        raise ConfigError(f"'structure' must be a mapping with one of the keys {list(STRUCTURE_KINDS)}")
    kinds = [k for k in STRUCTURE_KINDS if k in st]
    if len(kinds) != 1:
        raise ConfigError(
            f"'structure' needs exactly one of {list(STRUCTURE_KINDS)}, got {sorted(st)}"
        )
    kind = kinds[0]
    extra = set(st) - STRUCTURE_KEYS[kind]
    if extra:
        raise ConfigError(
            f"'structure' ({kind}) has unknown key(s) {sorted(extra)}; allowed: {sorted(STRUCTURE_KEYS[kind])}"
        )
    if kind in ("lattice", "crystal", "file"):
        rep = st.get("repeat", [1, 1, 1] if kind == "file" else None)
        if rep is None:
            raise ConfigError("'structure.repeat' is required for a lattice, e.g. repeat: [4, 4, 4]")
        if isinstance(rep, int):
            rep = [rep] * 3
        if (not isinstance(rep, list) or len(rep) != 3
                or not all(isinstance(n, int) and n >= 1 for n in rep)):
            raise ConfigError(f"'structure.repeat' must be 3 positive integers, got {rep!r}")
        st["repeat"] = rep
    if kind == "lattice":
        if "a" not in st:
            raise ConfigError("'structure.a' (lattice constant in Å) is required for a lattice")
        a = st["a"]
        if isinstance(a, dict):
            if set(a) != set(cfg["elements"]):
                raise ConfigError(
                    "'structure.a' as a mapping (Vegard's law) needs one lattice constant per "
                    f"element {cfg['elements']}, got {sorted(a)}"
                )
        elif not isinstance(a, (int, float)) or a <= 0:
            raise ConfigError(f"'structure.a' must be a positive number (Å), got {a!r}")
        if cfg["atom_style"] not in ("atomic", "charge"):
            raise ConfigError(
                f"a lattice structure needs atom_style atomic or charge (got {cfg['atom_style']!r}); "
                "give a molecular system as a data_file"
            )
    elif kind == "crystal":
        _check_crystal(st, cfg)
    elif kind in ("data_file", "file"):
        path = Path(st[kind])
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.is_file():
            raise ConfigError(f"'structure.{kind}': file {str(path)!r} does not exist")
        st[kind] = str(path)
        st["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    elif kind == "water_box":
        wb = st["water_box"]
        if not isinstance(wb, dict) or "molecules" not in wb:
            raise ConfigError("'structure.water_box' needs 'molecules' (and optionally 'density' in g/cm³)")
        if not isinstance(wb["molecules"], int) or wb["molecules"] < 1:
            raise ConfigError(f"'structure.water_box.molecules' must be a positive integer, got {wb['molecules']!r}")
        wb.setdefault("density", 0.997)
        if cfg["elements"] != ["O", "H"]:
            raise ConfigError("'structure.water_box' needs elements: [O, H] (type 1 = O, type 2 = H)")
        if cfg["atom_style"] != "full":
            raise ConfigError("'structure.water_box' needs atom_style: full")


def _check_crystal(st: dict, cfg: dict) -> None:
    from .structures import CRYSTALS

    name, species = st["crystal"], st.get("species")
    if name not in CRYSTALS:
        raise ConfigError(f"'structure.crystal' {name!r} is not a crystal structure actionmd builds; "
                          f"use one of {sorted(CRYSTALS)} (or a lattice, or a structure file)")
    example = ", ".join(["In", "P", "P"][:CRYSTALS[name]])
    if not isinstance(species, list) or len(species) != CRYSTALS[name]:
        raise ConfigError(f"'structure.species' must list the element of each of the {CRYSTALS[name]} basis site(s) "
                          f"of {name} (ASE's order), e.g. species: [{example}]; got {species!r}")
    outside = [el for el in species if el not in cfg["elements"]]
    if outside:
        raise ConfigError(f"'structure.species' {outside} not in 'elements' {cfg['elements']}")
    for key in ("a", "c"):
        if key == "a" or key in st:
            value = st.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"'structure.{key}' (lattice constant in Å) must be a positive number, got {value!r}")
    if cfg["atom_style"] not in ("atomic", "charge"):
        raise ConfigError(f"a crystal structure needs atom_style atomic or charge (got {cfg['atom_style']!r})")


def _check_temperatures(temps: Any) -> list[float]:
    if isinstance(temps, (int, float)):
        temps = [temps]
    if (not isinstance(temps, list) or not temps
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in temps)):
        raise ConfigError(f"'temperatures' must be a positive number or a list of them (K), got {temps!r}")
    return [float(t) for t in temps]


def _check_compositions(comps: Any, elements: list[str], structure: dict) -> list:
    if comps is None:
        return [None]
    if isinstance(comps, dict):
        comps = [comps]
    if not isinstance(comps, list) or not comps:
        raise ConfigError("'compositions' must be a list of mappings element -> fraction")
    if not ("lattice" in structure or "file" in structure):
        raise ConfigError("'compositions' only applies to a lattice or file structure (a crystal's "
                          "'species' already orders its sites)")
    out = []
    for comp in comps:
        if not isinstance(comp, dict) or not comp:
            raise ConfigError(f"composition {comp!r} must map elements to fractions")
        bad = [el for el in comp if el not in elements]
        if bad:
            raise ConfigError(f"composition {comp}: element(s) {bad} not in 'elements' {elements}")
        fr = [comp[el] for el in comp]
        if any(not isinstance(f, (int, float)) or f < 0 for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
            raise ConfigError(f"composition {comp}: fractions must be >= 0 and sum to 1")
        out.append({el: float(comp.get(el, 0.0)) for el in elements})
    return out


def _check_protocol(proto: Any) -> dict:
    if not isinstance(proto, dict):
        raise ConfigError("'protocol' must be a mapping (dt, equilibration_steps, ...)")
    unknown = set(proto) - set(PROTOCOL_DEFAULTS) - {"dt"}
    if unknown:
        raise ConfigError(
            f"unknown protocol key(s) {sorted(unknown)}; allowed: {sorted(set(PROTOCOL_DEFAULTS) | {'dt'})}"
        )
    if "dt" not in proto:
        raise ConfigError("'protocol.dt' (reference velocity-Verlet time step in fs) is required")
    out = {**PROTOCOL_DEFAULTS, **proto}
    if not isinstance(out["dt"], (int, float)) or out["dt"] <= 0:
        raise ConfigError(f"'protocol.dt' must be a positive number of fs, got {out['dt']!r}")
    out["dt"] = float(out["dt"])
    if out["thermostat"] not in THERMOSTATS:
        raise ConfigError(f"'protocol.thermostat' must be one of {THERMOSTATS}, got {out['thermostat']!r}")
    if out["thermostat_damp"] is None:
        out["thermostat_damp"] = 100.0 * out["dt"]
    out["thermostat_damp"] = float(out["thermostat_damp"])
    for key in ("equilibration_steps", "decorrelation_steps"):
        if not isinstance(out[key], int) or out[key] < 0:
            raise ConfigError(f"'protocol.{key}' must be a non-negative integer, got {out[key]!r}")
    for key in ("segments", "segment_steps", "record_every"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ConfigError(f"'protocol.{key}' must be a positive integer, got {out[key]!r}")
    if out["segment_steps"] % out["record_every"]:
        raise ConfigError(
            f"'protocol.segment_steps' ({out['segment_steps']}) must be a multiple of "
            f"'protocol.record_every' ({out['record_every']})"
        )
    return out


def element_mass(cfg: dict, element: str) -> float:
    """The config's mass for an element (u): its ``masses`` entry, else ASE's standard mass."""
    from ase.data import atomic_masses, atomic_numbers

    return float(cfg["masses"].get(element, atomic_masses[atomic_numbers[element]]))


def conditions(cfg: dict) -> list[dict]:
    """Every (composition, temperature) pair, compositions outermost."""
    return [
        {"composition": comp, "temperature": t}
        for comp, t in itertools.product(cfg["compositions"], cfg["temperatures"])
    ]


def _flatten(d: Any, prefix: tuple = ()) -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, prefix + (k,)))
        return out
    return {prefix: d}


def hashed_view(cfg: dict) -> dict:
    """The flattened part of a resolved config that determines finished data (``engine: lammps`` counts as
    absent: files made before engines existed resume)."""
    flat = _flatten(cfg)
    if flat.get(("engine",)) == "lammps":
        del flat[("engine",)]
    return {".".join(map(str, k)): v for k, v in flat.items() if k not in NOT_HASHED}


def config_digest(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(hashed_view(cfg), sort_keys=True).encode()).hexdigest()


def config_differences(old: dict, new: dict) -> list[str]:
    a, b = hashed_view(old), hashed_view(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            diffs.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return diffs
