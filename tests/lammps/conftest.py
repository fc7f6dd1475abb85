"""Fixtures for the LAMMPS plugin tests: the plugin, test models, and a runner
that starts `lmp` (or `mpirun -np N lmp`) in a subprocess so that a crash fails
one test, not the suite."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lmp_models as models
from lmp_helpers import BIN, ROOT, _lmp_binary, lmp_env


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """Directory holding actionmdplugin.so: $ACTIONMD_LAMMPS_PLUGIN_DIR, else an
    up-to-date CMake build of this checkout in build/lammps-plugin."""
    given = os.environ.get("ACTIONMD_LAMMPS_PLUGIN_DIR")
    if given:
        return Path(given)
    if shutil.which("cmake") is None:
        pytest.skip("cmake is needed to build the LAMMPS plugin")
    build = ROOT / "build" / "lammps-plugin"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    cache = build / "CMakeCache.txt"
    if cache.exists() and not re.search(rf"^Python_EXECUTABLE:\w+={re.escape(sys.executable)}$", cache.read_text(), re.M):
        shutil.rmtree(build)  # configured for another Python (same rule as setup.py)
    if not cache.exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build),
                        f"-DPython_EXECUTABLE={sys.executable}"],
                       check=True, env=env, capture_output=True)
    r = subprocess.run(["cmake", "--build", str(build), "-j2"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return build


@pytest.fixture(scope="session")
def plugin_so(plugin_dir):
    return plugin_dir / "actionmdplugin.so"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    models.lj_argon(d / "lj.pt")
    models.lj_argon(d / "lj_pred.pt", predictor=True)
    models.lj_argon(d / "lj_fpred.pt", predictor="forces")
    models.lj_argon(d / "lj32.pt", dtype="float32")
    return d


class Result:
    def __init__(self, proc, logfile):
        self.returncode = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.log = logfile.read_text() if logfile.exists() else ""

    def thermo(self):
        """Rows of the last thermo table as dicts of floats (other lines in the table, such as
        warnings or the fix's timing summary at the end of the run, are skipped)."""
        lines = self.log.splitlines()
        heads = [k for k, l in enumerate(lines) if l.split()[:1] == ["Step"]]
        assert heads, self.output[-3000:]
        names = lines[heads[-1]].split()
        rows = []
        for l in lines[heads[-1] + 1:]:
            if l.startswith("Loop time"):
                break
            try:
                values = [float(x) for x in l.split()]
            except ValueError:
                continue
            if len(values) == len(names):
                rows.append(dict(zip(names, values)))
        return rows


@pytest.fixture
def run_lmp(tmp_path, plugin_so):
    def run(script, np=1, env=None, timeout=180, files=None, launcher=False, prefix=()):
        (tmp_path / "in.test").write_text(script.replace("@PLUGIN@", str(plugin_so)))
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        lmp = BIN / "lmp" if launcher else _lmp_binary()[0]
        cmd = [str(lmp), "-in", "in.test", "-log", "log.lammps", "-nocite"]
        if np > 1:
            cmd = [str(BIN / "mpirun"), "-np", str(np)] + cmd
        cmd = [*prefix, *cmd]  # e.g. a shell that first moves itself into another cgroup
        e = lmp_env(env)
        proc = subprocess.run(cmd, cwd=tmp_path, env=e, capture_output=True, text=True,
                              timeout=timeout)
        return Result(proc, tmp_path / "log.lammps")
    run.dir = tmp_path
    return run
