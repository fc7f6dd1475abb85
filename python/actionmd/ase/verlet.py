"""ActionVerlet: NVE with the action map, a drop-in for ase.md.verlet.VelocityVerlet at long strides."""
from .base import ActionDynamics


class ActionVerlet(ActionDynamics):
    """Microcanonical dynamics, one model stride per step.

    ActionVerlet(atoms, model, timestep=None, *, mode='action', guess=None, tol=None, maxiter=50,
                 method='anderson', anderson_memory=8, newton_fallback=True, onfail='error', skin=1.0,
                 device=None, trajectory=None, logfile=None, loginterval=1)

    ``model`` is a path or an actionmd.model_file.LoadedModel; ``timestep`` (ASE units) defaults to the
    model's stride and may not differ from it. ``tol`` is in Å (mass-scaled residual, see actionmd.solver).
    ``anderson_memory``: past iterates Anderson mixing uses; stiff systems need more (flexible water at a
    4 fs stride needs ~38 evaluations with 8 and ~22 with 30). ``newton_fallback``: when
    Anderson has not converged in ``maxiter`` iterations, Newton–Krylov continues from its best iterate
    (``dyn.report.fell_back`` tells; ``solver_summary()`` counts them) instead of raising at once.
    """

    def step(self, forces=None):
        self._check_atoms(self.atoms)
        self.map_step()
