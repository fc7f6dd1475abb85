"""LAMMPS inputs shared by the plugin tests: an argon crystal data file, the standard LJ-argon
input script, and atoms on springs (on-site harmonic models)."""
from pathlib import Path

import numpy as np

import lmp_models as models

KB_EV = 8.617333262e-5
AR = models.AR_MASS


def argon_data(path, temperature=300.0, n=3, a=5.26, seed=7, ntypes=1, xbox=None, xshift=0.0):
    """fcc argon, n^3 cells, Maxwell velocities (A/ps) with zero total momentum.
    xbox/xshift: a longer box in x with the crystal shifted (a slab, for empty subdomains)."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)])
    pos = ((cells[:, None, :] + basis[None]) * a).reshape(-1, 3) + 0.01
    rng = np.random.default_rng(seed)
    sigma_v = np.sqrt(KB_EV * temperature / AR * 9648.533212)  # A/ps; eV/u = 9648.5 A^2/ps^2
    vel = rng.normal(0.0, sigma_v, pos.shape)
    vel -= vel.mean(axis=0)
    L = n * a
    pos[:, 0] += xshift
    lines = ["argon for actionmd tests", "", f"{len(pos)} atoms", f"{ntypes} atom types", "",
             f"0 {xbox or L} xlo xhi", f"0 {L} ylo yhi", f"0 {L} zlo zhi", "", "Masses", ""]
    lines += [f"{t} {AR}" for t in range(1, ntypes + 1)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {x:.17g} {y:.17g} {z:.17g}" for i, (x, y, z) in enumerate(pos)]
    lines += ["", "Velocities", ""]
    lines += [f"{i + 1} {x:.17g} {y:.17g} {z:.17g}" for i, (x, y, z) in enumerate(vel)]
    path.write_text("\n".join(lines) + "\n")
    return L


def lj_script(model, extra_fix="", steps=0, pre="", post="", timestep=0.02, pair="pair_style zero 6.5\npair_coeff * *",
              comm="comm_modify cutoff 8.0", units="metal", load=True, group="all", procs=""):
    return f"""
units {units}
atom_style atomic
{procs}
read_data ar.data
{pair}
neighbor 0.5 bin
{comm}
timestep {timestep}
{"plugin load @PLUGIN@" if load else ""}
{pre}
fix int {group} actionmd {model} types Ar {extra_fix}
thermo_style custom step temp ke f_int[1] f_int[2] f_int[3] f_int[4]
thermo_modify format float %.17g
thermo 10
{post}
run {steps}
"""


def velocities_to_real_units(path):
    """Rewrite the Velocities section of a data file written by argon_data from Å/ps to Å/fs."""
    head, velocities = Path(path).read_text().split("Velocities\n\n")
    rows = [line.split() for line in velocities.strip().splitlines()]
    Path(path).write_text(head + "Velocities\n\n" + "\n".join(
        f"{r[0]} " + " ".join(f"{float(x) / 1000.0:.17g}" for x in r[1:]) for r in rows) + "\n")


def oscillator_box(lammps_types, positions, type_masses, stride_fs):
    """Atoms on springs (on-site harmonic models) in a 40 Å box: the set-up before the fix line."""
    atoms = "\n".join(f"create_atoms {t} single {x} {y} {z}" for t, (x, y, z) in zip(lammps_types, positions))
    masses = "\n".join(f"mass {t} {m}" for t, m in enumerate(type_masses, start=1))
    return f"""
units metal
atom_style atomic
region box block -20 20 -20 20 -20 20
create_box {len(type_masses)} box
{atoms}
{masses}
pair_style zero 2.0
pair_coeff * *
neighbor 0.5 bin
comm_modify cutoff 6.0
timestep {stride_fs / 1000}
plugin load @PLUGIN@
"""
