"""The Langevin noise of fix actionmd continues, and never replays, across the ways a run is continued.

Free particles under the O half steps alone: v_n = c^(2n) v_0 + N with c = exp(-dt / (2 damp)), where the
noise part N depends only on the random kicks drawn. A continuation that replays earlier noise gives the
same N as the steps it repeats (correlation 1); fresh noise gives an uncorrelated N (|corr| ~ 0.13 for the
60 components here, so < 0.6 is a > 4 sigma margin)."""
import numpy as np

import lmp_models as models
from lmp_helpers import read_dump
from lmp_inputs import AR, oscillator_box

H, DAMP, NATOMS, STEPS = 10.0, 0.05, 20, 10
FIX = f"fix int all actionmd free.pt types Ar langevin 300 300 {DAMP} 4242 zero no"
C2N = np.exp(-STEPS * H / 1000 / DAMP)    # c^(2n): the O half steps' decay over STEPS strides


def _dumped_run(name):
    return f"""dump {name} all custom {STEPS} {name}.dump id vx vy vz
dump_modify {name} sort id format float %.17g
run {STEPS}
undump {name}
"""


def _noise(run_lmp, name):
    frames = read_dump(run_lmp.dir / f"{name}.dump")
    first, last = sorted(frames)
    return (frames[last][:, 1:4] - C2N * frames[first][:, 1:4]).ravel()


def _start(run_lmp):
    models.harmonic(run_lmp.dir / "free.pt", H, AR, 0.0)
    positions = np.random.default_rng(8).uniform(-15, 15, (NATOMS, 3))
    return oscillator_box([1] * NATOMS, positions, [AR], H) + f"""
velocity all create 300 5 dist gaussian
{FIX}
"""


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_a_run_continued_through_write_data_and_read_data_draws_new_noise(run_lmp):
    """read_data starts the step counter at 0 again: the noise must not repeat the first run's."""
    r = run_lmp(_start(run_lmp) + _dumped_run("first") + "write_data half.data nocoeff\n")
    assert r.returncode == 0, r.output[-3000:]
    again = f"""
units metal
atom_style atomic
read_data half.data
pair_style zero 2.0
pair_coeff * *
neighbor 0.5 bin
comm_modify cutoff 6.0
timestep {H / 1000}
plugin load @PLUGIN@
{FIX}
""" + _dumped_run("second")
    r = run_lmp(again)
    assert r.returncode == 0, r.output[-3000:]
    first, second = _noise(run_lmp, "first"), _noise(run_lmp, "second")
    assert np.abs(first).max() > 1e-3    # the thermostat acted
    assert abs(_corr(first, second)) < 0.6, _corr(first, second)


def test_reset_timestep_starts_a_new_stream_and_says_so(run_lmp):
    r = run_lmp(_start(run_lmp) + _dumped_run("first") + "reset_timestep 0\n" + _dumped_run("second"))
    assert r.returncode == 0, r.output[-3000:]
    assert "the step counter went back from 10 to 1" in r.output, r.output[-3000:]
    assert abs(_corr(_noise(run_lmp, "first"), _noise(run_lmp, "second"))) < 0.6


def test_a_split_run_draws_the_noise_of_a_straight_one(run_lmp):
    """'run 10' twice is 'run 20': the stream is kept between runs while the step counter goes forward."""
    r = run_lmp(_start(run_lmp) + f"""
dump d all custom {2 * STEPS} straight.dump id vx vy vz
dump_modify d sort id format float %.17g
run {2 * STEPS}
""")
    assert r.returncode == 0, r.output[-3000:]
    r = run_lmp(_start(run_lmp) + f"""
dump d all custom {2 * STEPS} split.dump id vx vy vz
dump_modify d sort id format float %.17g
run {STEPS}
run {STEPS}
""")
    assert r.returncode == 0, r.output[-3000:]
    straight = read_dump(run_lmp.dir / "straight.dump")[2 * STEPS]
    split = read_dump(run_lmp.dir / "split.dump")[2 * STEPS]
    assert np.abs(straight[:, 1:4] - split[:, 1:4]).max() < 1e-12
