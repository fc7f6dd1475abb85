"""The truth of an ASE-engine system in the comparisons: velocity Verlet with its calculator, frames saved."""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from actionmd.demo.runs import run_ase_reference


def test_the_ase_truth_saves_every_kth_step_and_conserves_energy(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(1))
    Stationary(atoms)
    result = run_ase_reference("truth", tmp_path, atoms, EMT(), dt_fs=2.0, steps=40, every=4)
    frames = read(result.frames, ":")
    assert len(frames) == 11 and result.frame_interval_fs == 8.0 and result.simulated_ps == 0.08
    total = [f.get_potential_energy() + f.get_kinetic_energy() for f in frames]
    kinetic = [f.get_kinetic_energy() for f in frames]
    assert np.ptp(total) < 0.02 * np.ptp(kinetic)    # velocity Verlet at 2 fs: NVE
    assert result.wall_seconds > 0


def test_an_ase_run_that_blows_up_stops_and_says_so(tmp_path):
    """Velocity Verlet far past stability: stopped as LAMMPS stops on lost atoms, not left to grow a graph
    potential's neighbour lists without bound."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(1))
    with pytest.raises(RuntimeError, match=r"truth: the run blew up at step \d+ \(kinetic energy .* times the "
                                           r"start's\): the time step is too long"):
        run_ase_reference("truth", tmp_path, atoms, EMT(), dt_fs=60.0, steps=200, every=1)
