"""What ActionVerlet and ActionLangevin share: the model, the checks of atoms against it, the map step.

ASE units outside (Å, eV, ASE time), model units inside (Å, u·Å/fs, fs); conversions in actionmd.units.
No calculator is needed to integrate; where the atoms have one, it is asked for the energy only on the
steps that the log or a trajectory records.
"""
from __future__ import annotations

import warnings

import numpy as np

from ase.calculators.calculator import PropertyNotImplementedError
from ase.io.trajectory import TrajectoryWriter
from ase.md.md import MolecularDynamics

from ..action_map import ActionMap
from ..solver import SolverOptions
from ..units import FS, momenta_ase_to_model, momenta_model_to_ase
from .logger import ActionLogger


class ActionDynamics(MolecularDynamics):
    """Base class: one call of step() advances the atoms by one model stride."""

    def __init__(self, atoms, model, timestep=None, *, mode="action", guess=None, tol=None, maxiter=50,
                 method="anderson", anderson_memory=8, newton_fallback=True, onfail="error", skin=1.0,
                 device=None, trajectory=None, logfile=None, loginterval=1, **kwargs):
        try:
            self.map = ActionMap(model, mode=mode, guess=guess, skin=skin, device=device,
                                 solver=SolverOptions(tol=tol, maxiter=maxiter, method=method,
                                                      anderson_memory=anderson_memory, onfail=onfail,
                                                      newton_fallback=newton_fallback))
        except TypeError as err:  # ActionMap's check of the model argument, with ASE's calling convention
            raise TypeError(f"{err}; the call is {type(self).__name__}(atoms, model, ...): the timestep comes "
                            "after the model, or not at all (it defaults to the model's stride)") from None
        if timestep is None:
            timestep = self.map.stride * FS
        if mode == "predictor":
            warnings.warn("mode='predictor' runs the model's direct prediction only: it is neither symplectic "
                          "nor time-reversible and will drift in energy; use it as a baseline, not for production",
                          UserWarning, stacklevel=2)
        self._checked = None  # (numbers, masses) the types were made from
        self._check_atoms(atoms)
        super().__init__(atoms, timestep, trajectory=trajectory, logfile=None, loginterval=loginterval, **kwargs)
        self.iterations: list[int] = []
        self.residuals: list[float] = []
        self.evaluations: list[int] = []
        self.fallbacks = 0
        if logfile:
            self.attach(self.closelater(ActionLogger(self, atoms, logfile)), loginterval)

    @property
    def dt(self) -> float:
        """The timestep (ASE time units): always the model's stride, which the map takes whatever dt says."""
        return self._dt

    @dt.setter
    def dt(self, timestep: float):
        stride_fs = self.map.stride
        if not abs(timestep / FS - stride_fs) <= 1e-9 * stride_fs:
            hint = (f"; the timestep is in ASE time units: {timestep:g} * ase.units.fs"
                    if abs(timestep - stride_fs) <= 1e-9 * stride_fs else "")
            raise ValueError(f"timestep {timestep / FS:.6g} fs differs from the model's stride {stride_fs:.6g} fs"
                             f"{hint}; leave timestep=None to use the stride, or use a model trained for this "
                             "timestep")
        self._dt = timestep

    def set_timestep(self, timestep: float):
        """As ASE's Langevin.set_timestep; only the model's stride is accepted."""
        self.dt = timestep

    def _check_atoms(self, atoms):
        """Species, masses and constraints against the model: at construction and again whenever they
        change between steps (atoms added or deleted, species or masses set), as ASE's integrators allow."""
        if atoms.constraints:
            fixcom = any(type(c).__name__ == "FixCom" for c in atoms.constraints)
            hint = (" ActionVerlet conserves total momentum exactly, and ActionLangevin(fixcm=True) keeps it "
                    "at zero, so FixCom is not needed." if fixcom else "")
            raise ValueError(f"{type(self).__name__} does not support constraints ({atoms.constraints}); "
                             f"remove them (del atoms.constraints) or use ASE's own integrators.{hint}")
        numbers, masses = atoms.numbers, atoms.get_masses()
        if self._checked is not None and np.array_equal(numbers, self._checked[0]) \
                and np.array_equal(masses, self._checked[1]):
            return
        self.types = self.map.types_of(numbers, masses)
        self._checked = (numbers.copy(), masses.copy())
        self.masses = masses[:, np.newaxis]  # as MolecularDynamics sets it, for the thermostat

    @property
    def report(self):
        """The solver report of the latest step (iterations, residual in Å, evaluations, converged)."""
        return self.map.last_report

    def _refresh_properties(self):
        """ASE computes forces after every step, for its log and trajectory; the map needs none, and a
        reference calculator may cost more than the stride. So the atoms' calculator (if any) is asked
        for the energy only on steps that a trajectory or the log records: the frames then hold the
        energy (and whatever the calculator computed with it), as VelocityVerlet's do."""
        if self.atoms.calc is None or not any(_records_frames(function) and self._records_now(interval)
                                              for function, interval, _, _ in self.observers):
            return
        try:
            self.atoms.get_potential_energy()
        except PropertyNotImplementedError:  # e.g. the SinglePointCalculator of a frame read from a file
            pass

    def _records_now(self, interval: int) -> bool:
        """Whether an observer attached with ``interval`` is called at this step (Dynamics.call_observers)."""
        return self.nsteps % interval == 0 if interval > 0 else self.nsteps == abs(interval)

    def map_step(self):
        """Advance positions and momenta by the map (no thermostat); step() has checked the atoms."""
        atoms = self.atoms
        q, p, report = self.map.step(atoms.get_positions(), momenta_ase_to_model(atoms.get_momenta()),
                                     self.types, atoms.cell.array, atoms.pbc)
        atoms.set_positions(q)
        atoms.set_momenta(momenta_model_to_ase(p))
        self.iterations.append(report.iterations)
        self.residuals.append(report.residual)
        self.evaluations.append(report.evaluations)
        self.fallbacks += report.fell_back

    def todict(self):
        options = self.map.solver
        return {**super().todict(), "model": self.map.model.path, "mode": self.map.mode, "guess": self.map.guess,
                "method": options.method, "anderson_memory": options.anderson_memory,
                "newton_fallback": options.newton_fallback, "tol": options.tol,
                "maxiter": options.maxiter, "onfail": options.onfail}

    def solver_summary(self) -> dict:
        """Iterations and model evaluations per step, and the worst residual, over the steps run so far."""
        its = np.asarray(self.iterations) if self.iterations else np.zeros(1)
        return {"steps": len(self.iterations), "mean_iterations": float(its.mean()),
                "mean_evaluations": float(np.mean(self.evaluations)) if self.evaluations else 0.0,
                "max_iterations": int(its.max()), "max_residual": float(max(self.residuals, default=0.0)),
                "newton_fallbacks": self.fallbacks}


def _records_frames(observer) -> bool:
    """The log, or a trajectory: ASE's own (Dynamics._traj_write_image) or a writer attached by hand."""
    owner = getattr(observer, "__self__", observer)
    return (isinstance(owner, (TrajectoryWriter, ActionLogger))
            or getattr(observer, "__name__", "") == "_traj_write_image")
