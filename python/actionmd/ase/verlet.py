"""ActionVerlet: NVE with the action map, a drop-in for ase.md.verlet.VelocityVerlet at long strides."""
from .base import ActionDynamics


class ActionVerlet(ActionDynamics):
    """Microcanonical dynamics, one model stride per step.

    ActionVerlet(atoms, model, timestep=None, *, mode='action', guess=None, tol=None, maxiter=50,
                 method='anderson', onfail='error', skin=1.0, device=None, trajectory=None,
                 logfile=None, loginterval=1)

    ``model`` is a path or an actionmd.model_file.LoadedModel; ``timestep`` (ASE units) defaults to the
    model's stride and may not differ from it. ``tol`` is in Å (mass-scaled residual, see actionmd.solver).
    """

    def step(self, forces=None):
        self.map_step()
