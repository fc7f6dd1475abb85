"""Structures that LAMMPS reads as data files: a flexible-water box, ordered crystals and ASE-readable files."""
from __future__ import annotations

import io
import math

import numpy as np

from .config import ConfigError

# SPC/Fw geometry (Wu, Tepper & Voth, J. Chem. Phys. 124, 024503 (2006)).
SPCFW_R0 = 1.012  # Å
SPCFW_THETA0 = 113.24  # degrees
SPCFW_CHARGES = {"O": -0.82, "H": 0.41}
WATER_MASS = 15.999 + 2 * 1.008  # g/mol


def water_box_data(n_molecules: int, density: float, seed: int, masses: dict[str, float]) -> str:
    """A cubic box of randomly oriented SPC/Fw molecules on a simple-cubic grid.

    Returns LAMMPS data-file text for ``atom_style full`` (type 1 = O, type 2 = H,
    one bond and one angle type).  Density in g/cm³.  Deterministic for a given seed.
    """
    volume = n_molecules * WATER_MASS / (0.602214076 * density)  # Å³
    length = volume ** (1.0 / 3.0)
    n_side = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    spacing = length / n_side
    rng = np.random.default_rng(seed)
    half = math.radians(SPCFW_THETA0) / 2
    # Molecule in its own frame: O at origin, H's in the xz plane.
    local = np.array([
        [0.0, 0.0, 0.0],
        [SPCFW_R0 * math.sin(half), 0.0, SPCFW_R0 * math.cos(half)],
        [-SPCFW_R0 * math.sin(half), 0.0, SPCFW_R0 * math.cos(half)],
    ])
    local -= local.mean(axis=0)
    sites = [(i, j, k) for i in range(n_side) for j in range(n_side) for k in range(n_side)]
    sites = [sites[i] for i in rng.permutation(len(sites))[:n_molecules]]
    atoms, bonds, angles = [], [], []
    for m, site in enumerate(sites):
        centre = (np.array(site) + 0.5) * spacing
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # random orthogonal matrix
        xyz = centre + local @ q.T
        base = 3 * m
        for a, (el, typ) in enumerate((("O", 1), ("H", 2), ("H", 2))):
            atoms.append(f"{base + a + 1} {m + 1} {typ} {SPCFW_CHARGES[el]:.4f} "
                         f"{xyz[a, 0]:.10f} {xyz[a, 1]:.10f} {xyz[a, 2]:.10f}")
        bonds.append(f"{2 * m + 1} 1 {base + 1} {base + 2}")
        bonds.append(f"{2 * m + 2} 1 {base + 1} {base + 3}")
        angles.append(f"{m + 1} 1 {base + 2} {base + 1} {base + 3}")
    lines = [
        f"SPC/Fw water box: {n_molecules} molecules, {density} g/cm3 (actionmd)",
        "",
        f"{3 * n_molecules} atoms", f"{2 * n_molecules} bonds", f"{n_molecules} angles",
        "2 atom types", "1 bond types", "1 angle types",
        "",
        f"0.0 {length:.10f} xlo xhi", f"0.0 {length:.10f} ylo yhi", f"0.0 {length:.10f} zlo zhi",
        "",
        "Masses", "", f"1 {masses['O']}", f"2 {masses['H']}",
        "",
        "Atoms # full", "", *atoms,
        "",
        "Bonds", "", *bonds,
        "",
        "Angles", "", *angles,
        "",
    ]
    return "\n".join(lines)


# ase.build.bulk's crystal structures, plus L1_2 (A3B: ``species`` = [A, B], A on the faces), and how many
# species each takes: ``species`` names the element of each basis site in ASE's order.
CRYSTALS = {"sc": 1, "fcc": 1, "bcc": 1, "hcp": 1, "diamond": 1, "zincblende": 2, "rocksalt": 2,
            "cesiumchloride": 2, "fluorite": 3, "wurtzite": 2, "L1_2": 2}


def crystal_atoms(structure: dict):
    """The ordered crystal of a ``structure: {crystal: ...}`` config as ASE Atoms (conventional cell,
    repeated): ordered compounds such as zincblende InP, which a LAMMPS lattice cannot give species."""
    from ase.build import bulk
    from ase.lattice.compounds import L1_2

    name, species, a = structure["crystal"], structure["species"], structure["a"]
    if name == "L1_2":
        atoms = L1_2(symbol=tuple(reversed(species)), latticeconstant=a, size=(1, 1, 1), pbc=True)
    else:
        atoms = bulk("".join(species), name, a=a, c=structure.get("c"), cubic=name not in ("hcp", "wurtzite"))
    return atoms.repeat(structure["repeat"])


def ase_file_data(path: str, fmt: str | None, elements: list[str], atom_style: str) -> str:
    """Read any ASE-readable structure and return LAMMPS data-file text (types follow ``elements``)."""
    import ase.io

    return atoms_data(ase.io.read(path, format=fmt), elements, atom_style, f"structure file {path!r}")


def atoms_data(atoms, elements: list[str], atom_style: str, source: str) -> str:
    """LAMMPS data-file text of ASE Atoms (types follow ``elements``; metal units)."""
    from ase.io.lammpsdata import write_lammps_data

    check_atoms(atoms, elements, source)
    buf = io.StringIO()
    write_lammps_data(buf, atoms, specorder=elements, masses=False, atom_style=atom_style, units="metal")
    return buf.getvalue()


def check_atoms(atoms, elements: list[str], source: str) -> None:
    """A structure's elements must be among the config's, and its cell fully periodic and 3D."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if missing:
        raise ConfigError(f"{source} contains element(s) {missing} that are not in 'elements' {elements}")
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ConfigError(f"{source} must be fully periodic with a 3D cell")
