"""Fixed units inside an actionmd model file, and conversions from ASE's units.

Inside a model: positions Å, momenta u·Å/fs, action u·Å²/fs, time fs, masses u.
Energies therefore come in u·Å²/fs²; the constants below are ASE's (CODATA 2014), so an ASE run and
the model agree exactly.
"""
from ase import units as _ase

#: one ASE time unit expressed in fs is 1/FS; ``t_fs * FS`` is the same time in ASE units.
FS = _ase.fs
#: one eV in model energy units (u·Å²/fs²).
EV = FS**2
#: Boltzmann constant in eV/K.
KB_EV = _ase.kB


def momenta_ase_to_model(p):
    """u·Å/(ASE time) -> u·Å/fs."""
    return p * FS


def momenta_model_to_ase(p):
    """u·Å/fs -> u·Å/(ASE time)."""
    return p / FS
