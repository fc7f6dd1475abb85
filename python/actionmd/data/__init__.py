"""Reference data: ``actionmd generate`` (LAMMPS velocity-Verlet trajectories -> HDF5) and
the reader the training code uses.  Format and units: docs/data.md."""
from .config import ConfigError, builtin_systems, load_config
from .reader import DatasetError, Pairs, ReferenceDataset, Segment, load_dataset, reference_config

__all__ = [
    "ConfigError", "DatasetError", "Pairs", "ReferenceDataset", "Segment",
    "builtin_systems", "load_config", "load_dataset", "reference_config",
]
