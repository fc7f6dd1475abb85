"""Reference data: ``actionmd generate`` (LAMMPS velocity-Verlet trajectories -> HDF5) and
the reader the training code uses.  Format and units: docs/data.md."""
from .config import ConfigError, builtin_systems, load_config

__all__ = ["ConfigError", "builtin_systems", "load_config"]
