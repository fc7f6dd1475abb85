"""Conversion from LAMMPS unit systems (and ASE's, for the ASE engine) to actionmd model units.

Model units (the whole project uses them): positions Å, time fs, masses u (g/mol),
energies eV, forces eV/Å, momenta u·Å/fs.  Only LAMMPS ``metal`` and ``real`` are
accepted: both measure length in Å and mass in g/mol, so only time and energy change.
"""
from __future__ import annotations

from dataclasses import dataclass

# CODATA 2018 exact SI values.
ELEMENTARY_CHARGE_C = 1.602176634e-19
AVOGADRO = 6.02214076e23
ATOMIC_MASS_KG = 1.66053906660e-27
KCAL_MOL_IN_EV = 4184.0 / (AVOGADRO * ELEMENTARY_CHARGE_C)
# Acceleration in Å/fs² produced by a force of 1 eV/Å on a mass of 1 u (CODATA).
FORCE_TO_ACCELERATION = ELEMENTARY_CHARGE_C / ATOMIC_MASS_KG * 1e10 * 1e-20  # eV/Å -> N, m/s² -> Å/fs²


@dataclass(frozen=True)
class LammpsUnits:
    name: str
    fs_per_time: float  # femtoseconds per LAMMPS time unit
    ev_per_energy: float  # eV per LAMMPS energy unit

    def dt_to_lammps(self, dt_fs: float) -> float:
        return dt_fs / self.fs_per_time

    def velocity_to_model(self, v):
        """Å/(LAMMPS time) -> Å/fs."""
        return v / self.fs_per_time

    def energy_to_model(self, e):
        return e * self.ev_per_energy

    def force_to_model(self, f):
        """(LAMMPS energy)/Å -> eV/Å."""
        return f * self.ev_per_energy

    def force_to_acceleration(self, ftm2v: float) -> float:
        """The constant LAMMPS really integrates with, in model units.

        a[Å/fs²] = C · F[eV/Å] / m[u]; LAMMPS's own ``ftm2v`` differs from the CODATA
        value :data:`FORCE_TO_ACCELERATION` by ~1e-7 relative (metal) -- stored with the
        data so a consumer can reproduce the reference integrator to round-off.
        """
        return ftm2v / self.fs_per_time**2 / self.ev_per_energy


UNITS = {
    "metal": LammpsUnits("metal", fs_per_time=1000.0, ev_per_energy=1.0),
    "real": LammpsUnits("real", fs_per_time=1.0, ev_per_energy=KCAL_MOL_IN_EV),
}


def _ase_units() -> LammpsUnits:
    """ASE's units, in which the ASE engine integrates: Å, eV, u, time Å·(u/eV)^½ = 1/ase.units.fs fs (≈ 10.18 fs);
    its force-to-acceleration constant (``ftm2v``) is 1."""
    from ase import units

    return LammpsUnits("ase", fs_per_time=1.0 / units.fs, ev_per_energy=1.0)


ASE_UNITS = _ase_units()
