"""actionmd.evaluation against answers known in advance: ideal-gas and fcc RDFs, Brownian diffusion,
harmonic spectra, Maxwell-Boltzmann temperatures, a linear drift, energies from ASE and from the
generator's own LAMMPS set-up; a short end-to-end CLI run; and the errors bad input gets."""
from __future__ import annotations

import json
import math
import tempfile

import mpi4py.MPI  # noqa: F401  (loads libmpi before lammps)
import numpy as np
import pytest
import ase.io
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_masses
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from actionmd.cli import main as cli_main
from actionmd.data.units import KCAL_MOL_IN_EV
from actionmd.evaluation import EvaluationError, Trajectory, evaluate, read_trajectory, to_jsonable
from actionmd.evaluation.dynamics import dynamics
from actionmd.evaluation.energy import energy_summary, kinetic_energy, lammps_energies
from actionmd.evaluation.structure import rdf
from actionmd.evaluation.thermal import temperatures
from actionmd.observables import temperature_per_species
from actionmd.units import EV, KB_EV

SEED = 20250805
RNG = np.random.default_rng(SEED)


def _traj(numbers, positions, cell, interval_fs=1.0, velocities=None, **kwargs):
    numbers = np.asarray(numbers)
    return Trajectory(numbers=numbers, masses=atomic_masses[numbers], positions=positions, cells=cell,
                      interval_fs=interval_fs, velocities=velocities, **kwargs)


def _maxwell_velocities(numbers, temperature, frames):
    """Independent Maxwell-Boltzmann draws (Å/fs): sigma^2 = k_B T / m per component."""
    sigma = np.sqrt(KB_EV * temperature * EV / atomic_masses[numbers])
    return RNG.normal(size=(frames, len(numbers), 3)) * sigma[None, :, None]


# ---------------------------------------------------------------------- structure
def test_rdf_of_uniform_random_points_is_one_within_binomial_noise():
    """Independent uniform points on a torus: a pair count in a shell is binomial (pairs sharing an atom are
    independent), so with E expected pairs g - 1 has standard deviation 1/sqrt(E)."""
    length, n, frames, bins, r_max = 15.0, 240, 20, 40, 7.5
    numbers = np.where(np.arange(n) < 80, 10, 54)
    traj = _traj(numbers, RNG.uniform(0, length, (frames, n, 3)), np.eye(3) * length)
    result = rdf(traj, r_max, bins=bins, max_frames=frames)
    shell = 4 / 3 * np.pi * np.diff(result["edges"] ** 3)
    counts = {"Ne-Ne": 80 * 79 / 2, "Ne-Xe": 80 * 160, "Xe-Xe": 160 * 159 / 2}
    z2 = []
    for pair, g in result["pairs"].items():
        expected = counts[pair] * shell * frames / length**3
        ok = expected > 20
        z = (g[ok] - 1) * np.sqrt(expected[ok] / (1 - shell[ok] / length**3))
        assert np.abs(z).max() < 4.5, pair
        z2.extend(z**2)
    # mean of z^2 is 1 with standard deviation sqrt(2/n)
    assert abs(np.mean(z2) - 1) < 4 * math.sqrt(2 / len(z2))


def test_rdf_of_perfect_fcc_has_its_shells_with_their_coordination_numbers():
    a = 4.0
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(4)  # 256 atoms, L = 16 Å
    traj = _traj(atoms.numbers, atoms.positions[None], atoms.cell.array)
    result = rdf(traj, r_max=7.93, bins=400)
    g, edges = result["pairs"]["Ar-Ar"], result["edges"]
    n = len(atoms)
    neighbours = g * (n - 1) / atoms.get_volume() * 4 / 3 * np.pi * np.diff(edges**3)  # per atom, per bin
    shells = {1: 12, 2: 6, 3: 24, 4: 12, 5: 24, 6: 8, 7: 48}  # (r/a)^2 * 2 -> coordination number
    expected = np.zeros_like(g)
    for k, count in shells.items():
        expected[np.searchsorted(edges, a * math.sqrt(k / 2)) - 1] = count
    np.testing.assert_allclose(neighbours, expected, atol=1e-9)


# ---------------------------------------------------------------------- dynamics
def test_diffusion_of_brownian_walkers_is_recovered_and_unwrapping_is_transparent():
    """Gaussian steps of variance 2 D dt per direction: MSD = 6 D t (1 - 1/N) after removing the centre of mass."""
    n, frames, dt, d_true, length = 200, 400, 10.0, 0.5, 30.0  # D in Å²/ps
    steps = RNG.normal(scale=math.sqrt(2 * d_true / 1000 * dt), size=(frames, n, 3))
    unwrapped = np.cumsum(steps, axis=0)
    velocities = RNG.normal(size=unwrapped.shape)  # required, irrelevant here
    wrapped = np.mod(unwrapped, length)
    window = (0.1 * frames * dt, 0.5 * frames * dt)
    results = [dynamics(_traj(np.full(n, 18), x, np.eye(3) * length, dt, velocities, unwrapped=flag), window)
               for x, flag in ((unwrapped, True), (wrapped, False))]
    d, stderr = results[0]["diffusion"]["Ar"]["msd_A2_per_ps"], results[0]["diffusion"]["Ar"]["msd_stderr_A2_per_ps"]
    expected = d_true * (1 - 1 / n)
    assert abs(d - expected) < 4 * stderr and stderr < 0.08 * expected  # measured: 4.5-5.5 %
    assert results[1]["diffusion"]["Ar"]["msd_A2_per_ps"] == pytest.approx(d, rel=1e-10)
    # image flags give the same unwrapped positions
    images = np.floor_divide(unwrapped, length).astype(int)
    flagged = _traj(np.full(n, 18), wrapped, np.eye(3) * length, dt, velocities, images=images)
    np.testing.assert_allclose(flagged.unwrapped_positions(), unwrapped, atol=1e-9)


def test_vacf_and_spectrum_of_harmonic_oscillators():
    """x = A sin(w t + phi): the VACF is cos(w tau) (phase average) and the spectrum peaks at w / 2 pi."""
    frequencies = {"Ne": 5.0, "Xe": 12.0}  # THz, as _harmonic_dynamics makes them
    result = _harmonic_dynamics()
    lag = result["lag_fs"]
    for name, f in frequencies.items():
        z = result["vacf"][name]
        short = lag < 2000 * 2.0 / 4  # a quarter of the 2000 frames of 2 fs
        np.testing.assert_allclose(z[short] / z[0], np.cos(2 * np.pi * f / 1000 * lag[short]), atol=0.03)
        spectrum = result["vdos"][name]
        resolution = spectrum["nu_THz"][1]
        assert abs(spectrum["peak_THz"] - f) <= resolution
        assert abs(result["diffusion"][name]["msd_A2_per_ps"]) < 1e-3  # bound atoms do not diffuse


# ---------------------------------------------------------------------- temperatures and energy
def test_temperatures_of_maxwell_boltzmann_samples():
    """Each T estimate averages 3 N F squares of Gaussians: relative standard deviation sqrt(2 / (3 N F))."""
    numbers = np.repeat([10, 54], 100)
    frames, target = 50, 120.0
    v = _maxwell_velocities(numbers, target, frames)
    traj = _traj(numbers, RNG.uniform(0, 10, v.shape), np.eye(3) * 10, 1.0, v)
    result = temperatures(traj)
    sigma = target * math.sqrt(2 / (3 * 100 * frames))
    for species in ("Ne", "Xe"):
        t = result["per_species"][species]
        assert abs(t["mean_K"] - target) < 4 * sigma
        assert np.all(np.abs(np.array(t["per_direction_K"]) - target) < 4 * sigma * math.sqrt(3))
        assert 0.3 * sigma < t["stderr_K"] < 3 * sigma
    assert result["spread"] < 4 * math.sqrt(2) * sigma / target
    # the same definition as actionmd.observables, frame by frame
    first = temperature_per_species(numbers, traj.masses, traj.masses[:, None] * v[0])
    assert first[10] == pytest.approx(result["per_species"]["Ne"]["series_K"][0], rel=1e-12)


def _water(n_side=3, spacing=3.2):
    """SPC/Fw-shaped molecules on a grid, atoms shuffled (the evaluation must find the molecules)."""
    half = math.radians(113.24) / 2
    local = np.array([[0, 0, 0], [math.sin(half), 0, math.cos(half)], [-math.sin(half), 0, math.cos(half)]]) * 1.012
    centres = (np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * spacing
    rotations = np.linalg.qr(RNG.normal(size=(len(centres), 3, 3)))[0]
    positions = (centres[:, None, :] + np.einsum("mij,aj->mai", rotations, local)).reshape(-1, 3)
    numbers = np.tile([8, 1, 1], len(centres))
    order = RNG.permutation(len(numbers))
    return numbers[order], positions[order], np.eye(3) * n_side * spacing, order


def test_water_translational_and_internal_temperatures():
    numbers, positions, cell, order = _water()
    molecule = np.repeat(np.arange(len(numbers) // 3), 3)[order]
    masses = atomic_masses[numbers]
    frames = 12
    v_com = RNG.normal(scale=0.01, size=(frames, len(numbers) // 3, 3))
    rigid = _traj(numbers, np.repeat(positions[None], frames, 0), cell, 1.0, v_com[:, molecule])
    water = temperatures(rigid)["water"]
    # 3 degrees of freedom per molecule: 3 * (len(numbers) / 3)
    expected = np.einsum("n,fni->f", masses, v_com[:, molecule] ** 2) / (len(numbers) * EV * KB_EV)
    assert water["translational_K"] == pytest.approx(expected.mean(), rel=1e-12)
    assert abs(water["internal_K"]) < 1e-9 * expected.mean()
    # pure rotation of every molecule about its centre of mass: no translation at all
    centre = np.stack([np.average(positions[molecule == m], axis=0, weights=masses[molecule == m])
                       for m in range(len(numbers) // 3)])[molecule]
    spin = RNG.normal(scale=0.02, size=(frames, len(numbers) // 3, 3))[:, molecule]
    rotating = _traj(numbers, np.repeat(positions[None], frames, 0), cell, 1.0,
                     np.cross(spin, positions - centre))
    water = temperatures(rotating)["water"]
    assert abs(water["translational_K"]) < 1e-9 * water["internal_K"]


def test_energy_drift_fit_recovers_a_synthetic_linear_drift():
    n_atoms, drift, noise = 100, 0.05, 0.2  # meV/atom/ps, meV/atom
    t = np.arange(2000) * 5.0  # fs
    total = n_atoms * (-2.0 + (drift * t / 1000 + RNG.normal(scale=noise, size=t.size)) / 1000)  # eV
    result = energy_summary(t, total, n_atoms)
    assert abs(result["drift_meV_per_atom_ps"] - drift) < 4 * result["drift_stderr_meV_per_atom_ps"]
    assert result["drift_stderr_meV_per_atom_ps"] == pytest.approx(noise * math.sqrt(12 / t.size) / 10, rel=0.05)
    assert result["fluctuation_meV_per_atom"] == pytest.approx(noise, rel=0.05)


LJ_LINES = ["pair_style lj/cut 6.5", "pair_coeff * * {eps!r} 3.4", "pair_modify shift yes"]


@pytest.mark.parametrize("lammps_units", ["metal", "real"])
def test_lammps_energies_match_ase_lennard_jones_in_a_changing_triclinic_cell(lammps_units):
    atoms = bulk("Ar", "fcc", a=5.4).repeat(3)  # primitive cells: triclinic, 27 atoms
    atoms.numbers[::3] = 36
    frames = []
    calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=6.5, smooth=False)  # shifted to 0 at rc, as pair_modify shift
    for k in range(4):
        frame = atoms.copy()
        frame.set_cell(atoms.cell * (1 + 0.01 * k), scale_atoms=True)  # a changing cell: change_box
        frame.rattle(0.1, seed=k)
        frame.calc = calc
        frame.calc = SinglePointCalculator(frame, energy=frame.get_potential_energy())  # as a file stores it
        frames.append(frame)
    traj = Trajectory.from_atoms(frames, 1.0)
    eps = 0.0104 if lammps_units == "metal" else 0.0104 / KCAL_MOL_IN_EV
    system = {"units": lammps_units, "elements": ["Ar", "Kr"], "potential": [s.format(eps=eps) for s in LJ_LINES]}
    np.testing.assert_allclose(lammps_energies(traj, system, progress=False), traj.potential_energy, rtol=0, atol=1e-9)


def test_water_energy_reevaluation_rebuilds_molecules_and_matches_the_generator():
    """The generator's own LAMMPS set-up (bonds from its data file) against evaluation's rebuilt molecules,
    with the atoms shuffled."""
    from actionmd.data.config import load_config
    from actionmd.data.lammps_run import structure_file
    from actionmd.data.lammps_run import Simulation
    from actionmd.data.units import UNITS

    cfg = load_config("water", ["structure.water_box.molecules=27"])
    with tempfile.TemporaryDirectory() as work:
        with Simulation(cfg, mpi4py.MPI.COMM_SELF, structure_file(cfg, work)) as sim:
            sim.build(None, 1)
            sim.create_velocities(300.0, 5)
            sim.thermalize(300.0, 3, 100)
            frames = sim.record(20, 10)
            types = sim.types()
            cell = sim.cell()[1]
    order = RNG.permutation(len(types))
    numbers = np.where(types == 1, 8, 1)[order]
    positions = np.stack([f.x for f in frames])[:, order]
    expected = UNITS["real"].energy_to_model(np.array([f.pe for f in frames]))
    energies = lammps_energies(_traj(numbers, positions, cell), "water", progress=False)
    np.testing.assert_allclose(energies, expected, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------- files and the CLI
SYSTEM_YAML = """units: metal
elements: [Ar, Kr]
structure: {lattice: fcc, a: 5.6, repeat: [2, 2, 2]}
potential: [pair_style lj/cut 6.5, pair_coeff * * 0.0104 3.4, pair_modify shift yes]
temperatures: [150.0]
protocol: {dt: 2.0}
"""


@pytest.fixture(scope="module")
def lj_runs(tmp_path_factory):
    """Velocity Verlet on a 32-atom Ar/Kr LJ fluid: 2 fs (reference) and 6 fs, a frame every 12 fs, 1.2 ps."""
    folder = tmp_path_factory.mktemp("lj_runs")
    atoms = bulk("Ar", "fcc", a=5.6, cubic=True).repeat(2)
    atoms.numbers[::2] = 36
    atoms.set_masses()
    thermalize_momenta(atoms, 150, rng=np.random.default_rng(1))
    Stationary(atoms)
    for dt, name in ((2.0, "ref"), (6.0, "run")):
        copy = atoms.copy()
        copy.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=6.5, smooth=False)
        with VelocityVerlet(copy, dt * units.fs, trajectory=str(folder / f"{name}.traj"),
                            loginterval=int(12 / dt)) as dyn:
            dyn.run(int(1200 / dt))
    (folder / "system.yaml").write_text(SYSTEM_YAML)
    return folder


def test_cli_end_to_end_on_ase_velocity_verlet_runs(lj_runs, capsys):
    out = lj_runs / "report"
    code = cli_main(["evaluate", str(lj_runs / "run.traj"), "--labels", "VV 6 fs", "--reference",
                     str(lj_runs / "ref.traj"), "--system", str(lj_runs / "system.yaml"), "-o", str(out),
                     "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and f"report: {out / 'report.md'}" in printed and "VV 6 fs" in printed
    for name in ("report.md", "results.json", "energy.png", "temperature.png", "rdf.png", "vacf.png", "msd.png",
                 "vdos.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    run, ref = results["runs"]["VV 6 fs"], results["runs"]["reference"]
    assert run["interval_fs"] == pytest.approx(12.0) and ref["n_frames"] == 101  # from the MD header
    # LAMMPS re-evaluation reproduces the energies ASE's own LJ stored in the file
    stored = read_trajectory(lj_runs / "ref.traj").potential_energy / 32
    np.testing.assert_allclose(ref["energy"]["potential_eV_per_atom"], stored, atol=1e-10)
    assert abs(ref["energy"]["drift_meV_per_atom_ps"]) < 0.1 and ref["goals"]["energy_drift"]["met"]
    assert set(run["vs_reference"]["rdf_l1"]) == {"Ar-Ar", "Ar-Kr", "Kr-Kr"}
    assert run["goals"]["rdf_l1"]["value"] == max(run["vs_reference"]["rdf_l1"].values())
    assert ref["goals"]["rdf_l1"]["met"] is None
    report = (out / "report.md").read_text()
    assert "![rdf](rdf.png)" in report and "| VV 6 fs |" in report


def _write_dump(path, steps, types=True, velocities=True):
    """A minimal LAMMPS text dump of 2 atoms in a 10 Å cube."""
    columns = "id " + ("type " if types else "") + "x y z" + (" vx vy vz" if velocities else "")
    with open(path, "w") as handle:
        for step in steps:
            handle.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n"
                         f"0 10\n0 10\n0 10\nITEM: ATOMS {columns}\n")
            for i in (1, 2):
                handle.write(f"{i} " + ("1 " if types else "") + f"{i} {i} {i}" + (" 1 0 0" if velocities else "")
                             + "\n")


def test_lammps_dump_reading_times_units_and_image_flags(tmp_path):
    """A dump written by LAMMPS itself: times from TIMESTEP x dt, velocities Å/ps -> Å/fs, image flags."""
    from actionmd.data.lammps_run import import_lammps

    _, lammps = import_lammps()
    lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    for line in ["units metal", "lattice fcc 5.6", "region box block 0 2 0 2 0 2", "create_box 2 box",
                 "create_atoms 1 box", "set type 1 type/fraction 2 0.5 7", "mass * 39.95",
                 "pair_style lj/cut 6.5", "pair_coeff * * 0.0104 3.4", "velocity all create 900 3",
                 "timestep 0.002", "fix 1 all nve",
                 f"dump a all custom 25 {tmp_path / 'wrapped.dump'} id type x y z ix iy iz vx vy vz",
                 f"dump b all custom 25 {tmp_path / 'unwrapped.lammpstrj'} id type xu yu zu vx vy vz",
                 "dump_modify a sort id", "run 500"]:
        lmp.command(line)
    ke = lmp.get_thermo("ke")
    lmp.close()
    wrapped = read_trajectory(tmp_path / "wrapped.dump", types=["Ar", "Kr"], timestep_fs=2.0)
    unwrapped = read_trajectory(tmp_path / "unwrapped.lammpstrj", types=["Ar", "Kr"], timestep_fs=2.0)
    assert wrapped.n_frames == 21 and wrapped.interval_fs == 50.0 and unwrapped.unwrapped
    assert wrapped.images is not None and np.abs(wrapped.images).max() > 0  # atoms crossed the box
    np.testing.assert_allclose(wrapped.unwrapped_positions(), unwrapped.positions, atol=1e-4)
    wrapped.masses[:] = 39.95
    assert kinetic_energy(wrapped)[-1] == pytest.approx(ke, rel=1e-4)


def test_bad_inputs_get_errors_that_name_the_problem_and_the_fix(tmp_path, lj_runs, capsys):
    (tmp_path / "x.foo").write_text("hello\n")
    with pytest.raises(EvaluationError, match=r"unknown trajectory format.*--format"):
        read_trajectory(tmp_path / "x.foo")
    _write_dump(tmp_path / "uneven.dump", [0, 10, 30])
    with pytest.raises(EvaluationError, match=r"not equally spaced.*10 -> 30 at frame 2"):
        read_trajectory(tmp_path / "uneven.dump", types=["Ar"], timestep_fs=1.0)
    _write_dump(tmp_path / "even.dump", [0, 10, 20])
    with pytest.raises(EvaluationError, match=r"no elements.*--types"):
        read_trajectory(tmp_path / "even.dump", timestep_fs=1.0)
    with pytest.raises(EvaluationError, match=r"time between frames is unknown.*--timestep.*--interval"):
        read_trajectory(tmp_path / "even.dump", types=["Ar"])
    frames = read_trajectory(lj_runs / "ref.traj")
    ase.io.write(tmp_path / "frames.xyz", ase.io.read(lj_runs / "ref.traj", ":3"))
    with pytest.raises(EvaluationError, match=r"time between frames is unknown.*--interval"):
        read_trajectory(tmp_path / "frames.xyz")
    still = _traj(frames.numbers, frames.positions, frames.cells, 12.0)
    with pytest.raises(EvaluationError, match=r"no velocities.*vx vy vz"):
        evaluate({"still": still})
    with pytest.raises(EvaluationError, match=r"5 frame\(s\), but .* needs at least 10"):
        evaluate({"short": frames.select(slice(0, 5))})
    fewer = _traj(frames.numbers[:-1], frames.positions[:, :-1], frames.cells, 12.0, frames.velocities[:, :-1])
    with pytest.raises(EvaluationError, match=r"has atoms \{'Ar': 15, 'Kr': 16\}.*reference .* has "
                                              r"\{'Ar': 16, 'Kr': 16\}: compare runs of the same system"):
        evaluate({"fewer": fewer}, reference=frames)
    code = cli_main(["evaluate", str(tmp_path / "even.dump"), "--timestep", "1", "-o", str(tmp_path / "out")])
    assert code == 2 and "--types" in capsys.readouterr().err


def _dump_frames(path, frames, steps, types, masses=False):
    """A LAMMPS text dump (metal units) of ASE frames in a cube from the origin, one TIMESTEP per frame."""
    with open(path, "w") as handle:
        for atoms, step in zip(frames, steps):
            length = atoms.cell[0, 0]
            handle.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(atoms)}\nITEM: BOX BOUNDS pp pp pp\n"
                         + f"0 {length}\n" * 3 + "ITEM: ATOMS id type x y z vx vy vz" + (" mass" if masses else "")
                         + "\n")
            velocities = atoms.get_velocities() * units.fs * 1000  # Å/ps
            for i, (symbol, x, v, m) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions, velocities,
                                                      atoms.get_masses())):
                values = [*x, *v, *([m] if masses else [])]
                handle.write(f"{i + 1} {types.index(symbol) + 1} " + " ".join(f"{c:.12g}" for c in values) + "\n")


def test_the_reference_time_comes_from_the_reference_never_from_the_runs_interval(lj_runs, tmp_path, capsys):
    """The runs' --interval once overrode --reference-timestep: a dump saved every 24 fs read as every 12 fs."""
    frames = ase.io.read(lj_runs / "ref.traj", "::2")  # dt 2 fs, a frame every 12 steps
    _dump_frames(tmp_path / "ref.dump", frames, [12 * k for k in range(len(frames))], ["Ar", "Kr"])
    out = tmp_path / "report"
    code = cli_main(["evaluate", str(lj_runs / "run.traj"), "--interval", "12", "--reference",
                     str(tmp_path / "ref.dump"), "--reference-timestep", "2", "--types", "Ar", "Kr", "-o", str(out),
                     "--no-progress"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["runs"]["run"]["interval_fs"] == 12.0 and results["runs"]["reference"]["interval_fs"] == 24.0
    assert results["runs"]["run"]["goals"]["diffusion"]["value"] < 0.5  # 2x wrong time once gave 100 %
    capsys.readouterr()
    # without its own timestep or interval, the reference does not borrow the runs'
    code = cli_main(["evaluate", str(lj_runs / "run.traj"), "--timestep", "2", "--reference",
                     str(tmp_path / "ref.dump"), "--types", "Ar", "Kr", "-o", str(out)])
    assert code == 2 and "--reference-timestep FS" in capsys.readouterr().err
    # an interval that contradicts the dump's step numbers x timestep is refused, naming both
    with pytest.raises(EvaluationError, match=r"--reference-interval 12 fs contradicts the dump: its frames are 12 "
                                              r"steps apart, which at --reference-timestep 2 fs is 24 fs"):
        read_trajectory(tmp_path / "ref.dump", interval_fs=12, timestep_fs=2, types=["Ar", "Kr"],
                        flag_prefix="--reference-")


def test_runs_at_different_strides_each_get_their_own_timestep(lj_runs, tmp_path, capsys):
    """One --timestep once applied to every run: a dump at another stride got a wrong duration and drift."""
    frames = ase.io.read(lj_runs / "ref.traj", ":12")
    _dump_frames(tmp_path / "a.dump", frames, range(12), ["Ar", "Kr"])
    _dump_frames(tmp_path / "b.dump", frames, range(0, 24, 2), ["Ar", "Kr"])
    out = tmp_path / "report"
    code = cli_main(["evaluate", str(tmp_path / "a.dump"), str(tmp_path / "b.dump"), "--timestep", "2", "1",
                     "--types", "Ar", "Kr", "-o", str(out), "--no-progress"])
    assert code == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs["a"]["interval_fs"] == 2.0 and runs["b"]["interval_fs"] == 2.0
    capsys.readouterr()
    code = cli_main(["evaluate", str(tmp_path / "a.dump"), str(tmp_path / "b.dump"), "--timestep", "2", "1", "4",
                     "--types", "Ar", "Kr", "-o", str(tmp_path / "other")])
    assert code == 2 and "--timestep: give one value for every run or one per trajectory (2), got 3" \
        in capsys.readouterr().err


def test_an_interval_that_contradicts_a_traj_header_is_reported(lj_runs):
    traj = read_trajectory(lj_runs / "run.traj", interval_fs=5.0)
    assert traj.interval_fs == 5.0 and len(traj.warnings) == 1
    assert "--interval 5 fs overrides the 12 fs" in traj.warnings[0]
    assert read_trajectory(lj_runs / "run.traj", interval_fs=12.0).warnings == []
    results = evaluate({"run": traj}, progress=False)
    assert any("overrides the 12 fs" in w for w in results["warnings"])


def test_types_that_contradict_the_system_or_the_dumps_masses_are_refused(lj_runs, tmp_path, capsys):
    """Swapped types read every Ar as Kr: garbage temperatures and energies, without a word."""
    frames = ase.io.read(lj_runs / "ref.traj", ":12")
    _dump_frames(tmp_path / "ref.dump", frames, range(12), ["Ar", "Kr"])
    code = cli_main(["evaluate", str(tmp_path / "ref.dump"), "--timestep", "2", "--types", "Kr", "Ar", "--system",
                     str(lj_runs / "system.yaml"), "-o", str(tmp_path / "out")])
    assert code == 2 and "--types Kr Ar contradicts --system" in capsys.readouterr().err
    _dump_frames(tmp_path / "mass.dump", frames, range(12), ["Ar", "Kr"], masses=True)
    with pytest.raises(EvaluationError, match=r"atom 1 \(in id order\) has mass 83.798 u in the dump, but "
                                              r"evaluation reads it as Ar of mass 39.948 u"):
        read_trajectory(tmp_path / "mass.dump", timestep_fs=2, types=["Kr", "Ar"])
    with pytest.raises(EvaluationError, match=r"atom 2 .* mass 39.948 u in the dump, but .* Ar of mass 40 u"):
        read_trajectory(tmp_path / "mass.dump", timestep_fs=2, types=["Ar", "Kr"], masses={"Ar": 40.0})
    right = read_trajectory(tmp_path / "mass.dump", timestep_fs=2, types=["Ar", "Kr"])
    np.testing.assert_array_equal(right.numbers, frames[0].numbers)


def test_cli_refuses_repeated_files_bad_bins_a_file_as_outdir_and_a_wrong_format(lj_runs, tmp_path, capsys):
    run = str(lj_runs / "run.traj")
    assert cli_main(["evaluate", run, run, "-o", str(tmp_path / "out")]) == 2
    assert "run.traj is given twice" in capsys.readouterr().err
    for bins in ("0", "-5"):
        with pytest.raises(SystemExit):
            cli_main(["evaluate", run, "--bins", bins, "-o", str(tmp_path / "out")])
        assert f"argument --bins: must be a positive whole number, got '{bins}'" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match=r"rdf_bins \(--bins\) must be a positive"):
        evaluate({"run": read_trajectory(run)}, rdf_bins=0)
    (tmp_path / "notes.txt").write_text("mine\n")
    assert cli_main(["evaluate", run, "-o", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt: exists and is not a folder" in capsys.readouterr().err
    assert cli_main(["evaluate", run, "--format", "lammps-dump-text", "--types", "Ar", "Kr", "-o",
                     str(tmp_path / "out")]) == 2
    assert f"{run}: not a LAMMPS text dump (lammps-dump-text): it is not a text file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_report_replaces_an_earlier_ones_files_and_nothing_else(lj_runs, tmp_path):
    from actionmd.evaluation import write_report

    out = tmp_path / "report"
    out.mkdir()
    for name in ("energy.png", "rdf.png", "notes.txt"):
        (out / name).write_text("earlier\n")
    results = evaluate({"run": read_trajectory(lj_runs / "run.traj")}, progress=False)
    results["runs"]["run"]["energy"] = None  # no energies: no energy.png this time
    written = write_report(results, out)
    assert not (out / "energy.png").exists() and (out / "notes.txt").read_text() == "earlier\n"
    assert (out / "rdf.png").read_bytes().startswith(b"\x89PNG") and out / "rdf.png" in written


def test_a_failed_run_is_recorded_by_the_lammps_error_that_says_why():
    """A LAMMPS failure ends with a link to its docs; the comparison table must show the ERROR line."""
    from actionmd.demo.pipeline import DeferredRun, run_all

    def fails(label):
        raise RuntimeError(f"{label}: LAMMPS failed (exit 1) in /tmp/run:\n  1750 1751.7 -891.3\n"
                           "ERROR: Lost atoms: original 256 current 94\n"
                           "For more information see https://docs.lammps.org/err0008 (src/src/thermo.cpp:526)\n")

    def succeeds(label):
        return label

    results, failures = run_all([DeferredRun("truth", succeeds), DeferredRun("velocity Verlet 20 fs", fails)])
    assert results == ["truth"]
    assert failures == {"velocity Verlet 20 fs": "RuntimeError: ERROR: Lost atoms: original 256 current 94"}


# ---------------------------------------------------------------------- pooled starts
def test_pooled_starts_recover_a_known_diffusion_ratio_with_an_honest_error_bar():
    """Brownian walkers with D = 0.6 against a 'truth' with D = 0.5, from six independent starts: the
    pooled relative D is +20 % within its error bar, and that bar comes from the scatter between starts
    (4 standard errors: with 5 degrees of freedom the bar itself is uncertain by ~30 %)."""
    from actionmd.evaluation.ensemble import pool
    n, frames, dt, length = 200, 200, 10.0, 30.0
    rng = np.random.default_rng(SEED)

    def walkers(d):
        steps = rng.normal(scale=math.sqrt(2 * d / 1000 * dt), size=(frames, n, 3))
        positions = rng.uniform(0, length, (n, 3)) + np.cumsum(steps, axis=0)
        return _traj(np.full(n, 18), positions, np.eye(3) * length, dt,
                     rng.normal(size=(frames, n, 3)), unwrapped=True)

    starts = [evaluate({"truth": walkers(0.5), "run": walkers(0.6)}, reference="truth", progress=False)
              for _ in range(6)]
    pooled = pool(json.loads(json.dumps(to_jsonable(starts))), [{"run": 2.0}, {"run": 3.0}] * 3)
    relative = pooled["run"]["diffusion_relative"]["Ar"]
    assert abs(relative["mean"] - 0.2) < 4 * relative["stderr"] and 0.005 < relative["stderr"] < 0.08
    d_runs = [s["runs"]["run"]["dynamics"]["diffusion"]["Ar"]["msd_A2_per_ps"] for s in starts]
    assert pooled["run"]["diffusion_A2_per_ps"]["Ar"]["mean"] == pytest.approx(np.mean(d_runs))
    assert pooled["run"]["mean_iterations"] == 2.5 and pooled["truth"]["mean_iterations"] is None
    assert "rdf_l1_noise" in pooled["truth"] and "diffusion_relative" not in pooled["truth"]
    assert pooled["run"]["rdf_l1"]["Ar-Ar"] < max(s["runs"]["run"]["vs_reference"]["rdf_l1"]["Ar-Ar"] for s in starts)
    with pytest.raises(EvaluationError, match="at least two evaluations against one reference"):
        pool(starts[:1])
    solid = [evaluate({"truth": walkers(0.0), "run": walkers(0.6)}, reference="truth", progress=False)
             for _ in range(2)]
    assert pool(solid)["run"]["diffusion_relative"] == {"Ar": None}  # no D ratio against a truth that does not move


# ---------------------------------------------------------------------- exact answers (mutation review)
def _fcc_rdf(bins=400, r_max=7.93):
    atoms = bulk("Ar", "fcc", a=4.0, cubic=True).repeat(4)
    return rdf(_traj(atoms.numbers, atoms.positions[None], atoms.cell.array), r_max=r_max, bins=bins)


def test_rdf_l1_is_the_summed_deviation_over_the_summed_reference():
    """L1 = sum|g - g_ref| / sum g_ref: a curve 10 % (100 %) too high everywhere is 0.1 (1.0) away."""
    from actionmd.evaluation.structure import rdf_l1

    g = _fcc_rdf()["pairs"]["Ar-Ar"]
    assert (g > 0).sum() >= 7 and (g == 0).sum() > 100  # structured: most bins empty, a few peaks
    assert rdf_l1(1.1 * g, g) == pytest.approx(0.1, rel=1e-12)
    assert rdf_l1(2 * g, g) == pytest.approx(1.0, rel=1e-12)
    assert rdf_l1(g, 2 * g) == pytest.approx(0.5, rel=1e-12)  # normalised by the reference, not the run
    assert rdf_l1(g, g) == 0.0


def _random_then_fcc(frames=10):
    """32 Ar atoms in a constant cube: the first half of the frames uniform random, the second half fcc."""
    atoms = bulk("Ar", "fcc", a=5.6, cubic=True).repeat(2)
    rng = np.random.default_rng(3)
    positions = np.concatenate([rng.uniform(0, 11.2, (frames // 2, len(atoms), 3)),
                                np.repeat(atoms.positions[None], frames - frames // 2, 0)])
    velocities = rng.normal(scale=0.01, size=positions.shape)
    return _traj(atoms.numbers, positions, atoms.cell.array, 2.0, velocities)


def test_rdf_halves_average_to_the_whole_and_split_the_frames_in_time():
    from actionmd.evaluation.structure import rdf_l1

    traj = _random_then_fcc()
    result = rdf(traj, r_max=5.5, bins=50)
    first, second = result["halves"]["Ar-Ar"]
    # constant volume, an even number of frames: the whole is the mean of its two halves
    np.testing.assert_allclose(0.5 * (first + second), result["pairs"]["Ar-Ar"], rtol=0, atol=1e-12)
    # random points first, a crystal last: the halves must differ (a noise floor from one half would be 0)
    assert rdf_l1(first, second) > 0.5
    random_only = rdf(traj.select(slice(0, 5)), r_max=5.5, bins=50, max_frames=5)["pairs"]["Ar-Ar"]
    crystal_only = rdf(traj.select(slice(5, None)), r_max=5.5, bins=50, max_frames=5)["pairs"]["Ar-Ar"]
    np.testing.assert_allclose(first, random_only, rtol=0, atol=1e-12)
    np.testing.assert_allclose(second, crystal_only, rtol=0, atol=1e-12)
    # the evaluation's noise floor of a reference compares its two halves
    results = evaluate({"ref": traj}, reference="ref", r_max=5.5, rdf_bins=50, progress=False)
    assert results["runs"]["ref"]["rdf_l1_noise"]["Ar-Ar"] == pytest.approx(rdf_l1(first, second), rel=1e-12)


def _pool_start(halves):
    """A minimal evaluate() result, as pool() reads it: one species, fixed numbers, given RDF halves."""
    def run(h):
        return {"temperature": {"per_species": {"Ar": {"mean_K": 100.0}}, "all_K": 100.0}, "energy": None,
                "dynamics": {"diffusion": {"Ar": {"msd_A2_per_ps": 1.0}}},
                "rdf": {"pairs": {"Ar-Ar": 0.5 * (h[0] + h[1])}, "halves": {"Ar-Ar": h}}}
    return {"reference": "truth", "runs": {"truth": run(halves), "run": run(halves)}}


def test_pooled_noise_floor_compares_the_first_halves_with_the_second_halves():
    from actionmd.evaluation.ensemble import pool
    from actionmd.evaluation.structure import rdf_l1

    g = _fcc_rdf(bins=100)["pairs"]["Ar-Ar"]
    starts = [_pool_start((g, 1.5 * g)), _pool_start((2 * g, 2 * g))]
    pooled = pool(starts)
    # mean first half 1.5 g, mean second half 1.75 g: L1 = 0.25 / 1.75
    assert pooled["truth"]["rdf_l1_noise"]["Ar-Ar"] == pytest.approx(0.25 / 1.75, rel=1e-12)
    assert pooled["truth"]["rdf_l1_noise"]["Ar-Ar"] == pytest.approx(rdf_l1(1.5 * g, 1.75 * g), rel=1e-12)


def test_green_kubo_diffusion_of_constant_velocities_is_the_integral_of_a_constant_vacf():
    """v_i = c_i for all time: Z(τ) = <|c|²> at every lag, so D_GK = <|c|²> τ_end / 3 (Å²/fs -> x1000 Å²/ps)."""
    rng = np.random.default_rng(5)
    numbers = np.repeat([10, 54], 8)
    frames, dt = 40, 2.0
    c = rng.normal(scale=0.01, size=(len(numbers), 3))  # Å/fs
    t = np.arange(frames)[:, None, None] * dt
    positions = rng.uniform(0, 10, (len(numbers), 3)) + c * t
    velocities = np.repeat(c[None], frames, 0)
    window = (8.0, 30.0)  # lags 0, 2, ..., 40 fs: the window ends at the lag of 30 fs
    result = dynamics(_traj(numbers, positions, np.eye(3) * 10, dt, velocities, unwrapped=True), window)
    tau_end = 30.0
    for name, z in (("Ne", 10), ("Xe", 54)):
        mean_square = (c[numbers == z] ** 2).sum(axis=1).mean()
        np.testing.assert_allclose(result["vacf"][name], mean_square, rtol=1e-12)
        assert result["diffusion"][name]["green_kubo_A2_per_ps"] == pytest.approx(
            mean_square * tau_end / 3 * 1000, rel=1e-12)


def _harmonic_dynamics(seed=11):
    """x = A sin(w t + phi) with random phases and amplitudes: Ne at 5 THz, Xe at 12 THz."""
    rng = np.random.default_rng(seed)
    dt, frames = 2.0, 2000
    numbers = np.repeat([10, 54], 60)
    nu = np.where(numbers == 10, 5.0, 12.0) / 1000  # 1/fs
    omega = 2 * np.pi * nu[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (1, len(numbers), 3))
    amplitude = rng.uniform(0.05, 0.1, (1, len(numbers), 3))
    t = (np.arange(frames) * dt)[:, None, None]
    positions = 5.0 + amplitude * np.sin(omega * t + phase)
    velocities = amplitude * omega * np.cos(omega * t + phase)
    return dynamics(_traj(numbers, positions, np.eye(3) * 20, dt, velocities), (200.0, 1000.0))


def test_vdos_has_unit_area_and_spectrum_l1_runs_from_0_to_2():
    from scipy.integrate import trapezoid

    from actionmd.evaluation.dynamics import spectrum_l1

    result = _harmonic_dynamics()
    ne, xe = result["vdos"]["Ne"], result["vdos"]["Xe"]
    for spectrum in (ne, xe):
        assert trapezoid(spectrum["spectrum"], spectrum["nu_THz"]) == pytest.approx(1.0, rel=1e-10)
    assert spectrum_l1(ne["nu_THz"], ne["spectrum"], ne["nu_THz"], ne["spectrum"]) == 0.0
    # 5 THz against 12 THz: no overlap, so the distance is the sum of both areas
    assert spectrum_l1(ne["nu_THz"], ne["spectrum"], xe["nu_THz"], xe["spectrum"]) > 1.9


def test_a_common_drift_does_not_change_the_diffusion_coefficient():
    """The centre of mass is removed before the MSD: adding u t to every position changes nothing."""
    rng = np.random.default_rng(7)
    n, frames, dt, length = 50, 100, 10.0, 30.0
    unwrapped = rng.uniform(0, length, (n, 3)) + np.cumsum(rng.normal(scale=0.1, size=(frames, n, 3)), axis=0)
    drift = 0.01 * np.arange(frames)[:, None, None] * dt * np.array([1.0, -0.5, 0.3])  # |u| ~ 0.01 Å/fs
    velocities = rng.normal(size=unwrapped.shape)
    numbers = np.repeat([10, 54], n // 2)
    window = (100.0, 500.0)
    still, moving = (dynamics(_traj(numbers, x, np.eye(3) * length, dt, velocities, unwrapped=True), window)
                     for x in (unwrapped, unwrapped + drift))
    for name in ("Ne", "Xe"):
        d = still["diffusion"][name]["msd_A2_per_ps"]
        assert d > 0.1
        assert moving["diffusion"][name]["msd_A2_per_ps"] == pytest.approx(d, rel=1e-9)


def test_water_internal_temperature_counts_six_degrees_of_freedom_per_molecule():
    numbers, positions, cell, order = _water()
    molecule = np.repeat(np.arange(len(numbers) // 3), 3)[order]
    n_mol = len(numbers) // 3
    masses = atomic_masses[numbers]
    frames = 12
    centre = np.stack([np.average(positions[molecule == m], axis=0, weights=masses[molecule == m])
                       for m in range(n_mol)])[molecule]
    spin = RNG.normal(scale=0.02, size=(frames, n_mol, 3))[:, molecule]
    v = np.cross(spin, positions - centre)
    water = temperatures(_traj(numbers, np.repeat(positions[None], frames, 0), cell, 1.0, v))["water"]
    expected = np.einsum("n,fni->f", masses, v**2) / (6 * n_mol * EV * KB_EV)  # all of it internal
    assert water["internal_K"] == pytest.approx(expected.mean(), rel=1e-12)
    # any velocities: 3 translational + 6 internal degrees of freedom per molecule are its 9
    v = RNG.normal(scale=0.01, size=(frames, len(numbers), 3))
    result = temperatures(_traj(numbers, np.repeat(positions[None], frames, 0), cell, 1.0, v))
    water = result["water"]
    assert 3 * water["translational_K"] + 6 * water["internal_K"] == pytest.approx(9 * result["all_K"], rel=1e-12)
    assert water["internal_K"] != pytest.approx(water["translational_K"], rel=0.01)  # not a trivial split


def test_temperature_spread_is_the_difference_over_the_temperature_of_all_atoms():
    numbers = np.repeat([10, 54], 50)
    v = _maxwell_velocities(numbers, 100.0, 20)
    measured = temperatures(_traj(numbers, RNG.uniform(0, 10, v.shape), np.eye(3) * 10, 1.0, v))["per_species"]
    v[:, numbers == 10] *= math.sqrt(100.0 / measured["Ne"]["mean_K"])
    v[:, numbers == 54] *= math.sqrt(110.0 / measured["Xe"]["mean_K"])
    result = temperatures(_traj(numbers, RNG.uniform(0, 10, v.shape), np.eye(3) * 10, 1.0, v))
    assert result["per_species"]["Ne"]["mean_K"] == pytest.approx(100.0, rel=1e-12)
    assert result["per_species"]["Xe"]["mean_K"] == pytest.approx(110.0, rel=1e-12)
    assert result["all_K"] == pytest.approx(105.0, rel=1e-12)
    assert result["spread"] == pytest.approx(10 / 105, rel=1e-9)


def test_relative_diffusion_and_temperature_against_the_reference():
    """The reference with displacements x1.2 (D x1.44) and velocities x1.1 (T x1.21): +44 % and +21 %."""
    rng = np.random.default_rng(9)
    n, frames, dt, length = 60, 100, 10.0, 30.0
    numbers = np.repeat([10, 54], n // 2)
    positions = rng.uniform(0, length, (n, 3)) + np.cumsum(rng.normal(scale=0.1, size=(frames, n, 3)), axis=0)
    velocities = rng.normal(scale=0.01, size=(frames, n, 3))
    reference = _traj(numbers, positions, np.eye(3) * length, dt, velocities, unwrapped=True)
    scaled = _traj(numbers, positions[:1] + 1.2 * (positions - positions[:1]), np.eye(3) * length, dt,
                   1.1 * velocities, unwrapped=True)
    results = evaluate({"run": scaled, "truth": reference}, reference="truth", progress=False)
    versus = results["runs"]["run"]["vs_reference"]
    for name in ("Ne", "Xe"):
        assert versus["diffusion_relative"][name] == pytest.approx(0.44, rel=1e-9)
        assert versus["temperature_relative"][name] == pytest.approx(0.21, rel=1e-9)
    assert versus["diffusion_relative_max"] == pytest.approx(0.44, rel=1e-9)


def test_selecting_every_other_frame_doubles_the_interval():
    traj = _random_then_fcc()
    every_other = traj.select(slice(0, None, 2))
    assert every_other.interval_fs == 2 * traj.interval_fs and every_other.n_frames == 5
    np.testing.assert_array_equal(every_other.positions, traj.positions[::2])
    assert traj.select(slice(2, 6)).interval_fs == traj.interval_fs


def test_image_flags_unwrap_in_a_triclinic_cell_with_the_lattice_vectors_as_rows():
    cell = np.array([[10.0, 0, 0], [3.0, 10.0, 0], [2.0, 1.0, 10.0]])
    rng = np.random.default_rng(13)
    frames, n = 4, 6
    positions = rng.uniform(0, 1, (frames, n, 3)) @ cell
    images = rng.integers(-3, 4, (frames, n, 3))
    traj = _traj(np.full(n, 18), positions, cell, 1.0, images=images)
    expected = positions + np.einsum("fni,ij->fnj", images, cell)  # n_a a + n_b b + n_c c
    np.testing.assert_allclose(traj.unwrapped_positions(), expected, rtol=0, atol=1e-12)
    k = (1, 2)
    manual = positions[k] + images[k][0] * cell[0] + images[k][1] * cell[1] + images[k][2] * cell[2]
    np.testing.assert_allclose(traj.unwrapped_positions()[k], manual, rtol=0, atol=1e-12)


def test_energy_max_deviation_is_measured_from_the_first_frame():
    """A noise-free drift of 0.05 meV/atom/ps over 9.995 ps: the last frame is 0.49975 meV/atom above the first."""
    n_atoms, drift = 100, 0.05
    t = np.arange(2000) * 5.0  # fs
    total = n_atoms * (-2.0 + drift * t / 1000 / 1000)  # eV
    result = energy_summary(t, total, n_atoms)
    assert result["max_deviation_meV_per_atom"] == pytest.approx(0.49975, rel=1e-9)
    assert result["drift_meV_per_atom_ps"] == pytest.approx(drift, rel=1e-9)
    assert result["fluctuation_meV_per_atom"] < 1e-9
