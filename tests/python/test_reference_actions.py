"""Reference pair actions against closed forms: dimer energies, and the harmonic dimer's exact
implicit-midpoint rotation angle tan(theta/2) = w dt / 2."""
import numpy as np
import pytest
from ase import Atoms

from actionmd.action_map import ActionMap
from actionmd.reference import PotentialCalculator, harmonic_pairs, lennard_jones, morse
from actionmd.units import EV

from ref_systems import export


def dimer(symbols, r):
    return Atoms(symbols, positions=[[0, 0, 0], [r, 0, 0]])


@pytest.mark.parametrize("r", [2.9, 3.4, 4.5])
def test_lennard_jones_dimer_energy_with_lorentz_berthelot_mixing(model_dir, r):
    path = export(lennard_jones(["Ne", "Xe"], epsilon=[0.003, 0.02], sigma=[2.8, 4.0], cutoff=10.0, stride=1.0),
                  model_dir / "lj-dimer.pt")
    atoms = dimer("NeXe", r)
    atoms.calc = PotentialCalculator(path)
    eps, sigma = np.sqrt(0.003 * 0.02), 0.5 * (2.8 + 4.0)  # below switch_start = 8 Å: no switching
    assert atoms.get_potential_energy() == pytest.approx(4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6), rel=1e-12)


def test_morse_dimer_energy_and_switch_to_zero(model_dir):
    path = export(morse(["Cu"], depth=0.34, alpha=1.36, r0=2.63, cutoff=6.0, stride=1.0), model_dir / "morse.pt")
    atoms = dimer("Cu2", 2.9)
    atoms.calc = PotentialCalculator(path)
    e = np.exp(-1.36 * (2.9 - 2.63))
    assert atoms.get_potential_energy() == pytest.approx(0.34 * (e * e - 2 * e), rel=1e-12)
    atoms.positions[1, 0] = 6.0001  # past the cutoff: no energy, no force
    assert atoms.get_potential_energy() == 0.0 and np.abs(atoms.get_forces()).max() == 0.0


def test_harmonic_dimer_rotates_by_the_exact_midpoint_angle(model_dir):
    """1D harmonic dimer: implicit midpoint is a rotation by theta = 2 atan(w dt / 2) per step."""
    k, r0, stride = 5.0, 1.1, 8.0  # eV/Å², Å, fs
    path = export(harmonic_pairs(["H", "He"], k=k, r0=r0, cutoff=4.0, stride=stride, masses=[1.0, 2.0]),
                  model_dir / "harmonic.pt")
    w = np.sqrt(k * EV / (2.0 / 3.0))  # rad/fs, reduced mass 2/3 u
    assert w * stride > 2  # velocity Verlet would be unstable here
    action_map = ActionMap(path)
    types = action_map.types_of([1, 2], masses=[1.0, 2.0])
    q, p = np.array([[0.0, 0, 0], [r0 + 0.05, 0, 0]]), np.zeros((2, 3))
    theta = 2 * np.arctan(w * stride / 2)
    for n in range(1, 41):
        q, p, _ = action_map.step(q, p, types, np.zeros((3, 3)), [False] * 3)
        assert q[1, 0] - q[0, 0] - r0 == pytest.approx(0.05 * np.cos(n * theta), abs=1e-9)
    assert np.abs(p.sum(0)).max() < 1e-14
