"""A log line per logged step: ASE's MDLogger columns plus the solver's iterations and residual.

The potential energy is that of the atoms' calculator, if there is one and it can give it ("-" if not,
e.g. for the stored results of a frame read from a file once the atoms have moved).
"""
from __future__ import annotations

from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.utils import IOContext


class ActionLogger(IOContext):
    """Time [ps], Etot/Epot/Ekin [eV], T [K], iterations and residual [Å] of the latest step."""

    def __init__(self, dyn, atoms, logfile, mode="a"):
        self.dyn, self.atoms = dyn, atoms
        self.logfile = self.openfile(file=logfile, mode=mode, comm=dyn.comm)
        self.logfile.write(f"{'Time[ps]':>10} {'Etot[eV]':>14} {'Epot[eV]':>14} {'Ekin[eV]':>14} {'T[K]':>9} "
                           f"{'iters':>6} {'residual[Å]':>12}\n")

    def __call__(self):
        atoms = self.atoms
        ekin = atoms.get_kinetic_energy()
        temperature = atoms.get_temperature()
        epot = None
        if atoms.calc is not None:
            try:
                epot = atoms.get_potential_energy()
            except PropertyNotImplementedError:  # a frame's stored results (read from a file) after a step
                pass
        energies = f"{epot + ekin:14.6f} {epot:14.6f}" if epot is not None else f"{'-':>14} {'-':>14}"
        report = self.dyn.report
        time_ps = self.dyn.get_time() / (1000 * units.fs)
        self.logfile.write(f"{time_ps:10.4f} {energies} {ekin:14.6f} {temperature:9.2f} "
                           f"{report.iterations:6d} {report.residual:12.3e}\n")
        self.logfile.flush()
