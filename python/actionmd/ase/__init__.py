"""ASE integrators driven by an actionmd model."""
from .langevin import ActionLangevin
from .verlet import ActionVerlet

__all__ = ["ActionLangevin", "ActionVerlet"]
