"""The ASE engine of ``actionmd generate`` (engine: ase) with ASE's EMT on small Cu-Ni cells: the physics of
the stored reference, exact resume, parts and their merge, the errors bad input deserves, and the data's
use by the reader, training and evaluation."""
from __future__ import annotations

import copy
import json
import shutil

import h5py
import numpy as np
import pytest
import yaml

from actionmd.data import ConfigError, load_dataset, reference_config
from actionmd.data.cli import main as data_cli
from actionmd.data.config import load_config, resolve_config
from actionmd.data.generate import StopRequested, generate, parse_part
from actionmd.data.merge import merge_parts
from actionmd.data.protocol import EngineError

from amd_data_helpers import assert_same_file, run_cli, vv_residuals

KB = 8.617333262e-5  # eV/K

# 16 atoms of random fcc Cu3Ni at two temperatures, a frame every step (the velocity-Verlet residual check)
BASE = {
    "engine": "ase",
    "calculator": {"factory": "ase.calculators.emt:EMT"},
    "elements": ["Cu", "Ni"],
    "structure": {"lattice": "fcc", "a": {"Cu": 3.6, "Ni": 3.52}, "repeat": [2, 2, 1]},
    "temperatures": [300, 600],
    "compositions": [{"Cu": 0.75, "Ni": 0.25}],
    "protocol": {"dt": 2.0, "thermostat_damp": 40.0, "equilibration_steps": 60, "decorrelation_steps": 20,
                 "segments": 2, "segment_steps": 30},
    "seed": 4,
}

FLAKY_CALCULATOR = '''
import os
from ase.calculators.emt import EMT

class Flaky(EMT):
    """EMT that fails at its Nth calculation when ACTIONMD_TEST_FAIL_AT=N (a calculator dying mid-run)."""
    calls = 0
    def calculate(self, *args, **kwargs):
        Flaky.calls += 1
        if Flaky.calls == int(os.environ.get("ACTIONMD_TEST_FAIL_AT", "0")):
            raise RuntimeError("device lost")
        super().calculate(*args, **kwargs)

def make_calculator():
    Flaky.calls = 0
    return Flaky()
'''


def raw_config(**changes) -> dict:
    """BASE with top-level keys replaced (None removes one) and ``protocol_*`` keys set in the protocol."""
    raw = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key.startswith("protocol_"):
            raw["protocol"][key[len("protocol_"):]] = value
        elif value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def ase_config(**changes) -> dict:
    return resolve_config(raw_config(**changes))


def config_file(directory, name="ase.yaml", **changes):
    path = directory / name
    path.write_text(yaml.safe_dump(raw_config(**changes)))
    return path


def same_arrays(a, b):
    """Every dataset of two files (groups and names alike), bit for bit."""
    found = {}
    for path in (a, b):
        with h5py.File(path) as f:
            found[path] = {}
            f.visititems(lambda name, obj: found[path].__setitem__(name, obj[()])
                         if isinstance(obj, h5py.Dataset) else None)
    assert found[a].keys() == found[b].keys()
    for key in found[a]:
        np.testing.assert_array_equal(found[a][key], found[b][key], err_msg=key)


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ase") / "ref.h5"
    generate(ase_config(), path, progress=False)
    return path


# ---------------------------------------------------------------------------------------------- physics
def test_the_stored_frames_are_velocity_verlet_in_model_units_and_conserve_energy(ref_file):
    ds = load_dataset(ref_file)  # the existing reader validates the file
    assert len(ds) == 4 and ds.dt_fs == 2.0 and ds.record_every == 1
    with h5py.File(ref_file) as f:
        assert f.attrs["engine"] == "ase" and f.attrs["ase_version"]
        assert json.loads(f.attrs["calculator_json"])["factory"] == "ase.calculators.emt:EMT"
        assert "lammps_version" not in f.attrs and "potential_json" not in f.attrs
        assert sorted(f["condition_000/equilibrated"]) == ["cell", "momenta", "type", "x"]
    for seg in ds:
        assert seg.positions.shape == (31, 16, 3)
        assert (seg.atomic_numbers == 28).sum() == 4  # Cu3Ni with exact counts
        np.testing.assert_allclose(seg.cell, np.diag([7.16, 7.16, 3.58]), rtol=0, atol=1e-12)  # Vegard's law
        # VV to round-off with the stored constant: positions, momenta, forces and constant agree in units
        dq, dp = vv_residuals(seg)
        assert dq < 1e-12 and dp < 1e-13, (seg.source, dq, dp)
        assert np.abs(seg.momenta.sum(axis=1)).max() < 1e-12  # the thermostats kept the centre of mass at rest
        kinetic = seg.kinetic_energy()
        total = kinetic + seg.potential_energy
        # NVE: the total energy stays put while kinetic and potential energy trade (EMT at 2 fs: measured
        # max |E - E0| 0.08-0.11 % of the kinetic energy's swing, 0.3-0.8 meV)
        assert np.abs(total - total[0]).max() < 0.01 * (kinetic.max() - kinetic.min()), seg.source


def test_energy_error_drops_as_dt_squared(tmp_path):
    """Same initial state (no thermostat phases), the same times at dt and dt/2: VV's energy error drops ~4x."""
    errors = []
    for k, dt in enumerate((4.0, 2.0)):
        cfg = ase_config(temperatures=[600], protocol_dt=dt, protocol_equilibration_steps=0,
                         protocol_decorrelation_steps=0, protocol_segments=1, protocol_segment_steps=20 * 2**k,
                         protocol_record_every=2**k)
        seg = load_dataset(generate(cfg, tmp_path / f"dt{k}.h5", progress=False)).segments[0]
        total = seg.kinetic_energy() + seg.potential_energy
        errors.append(np.abs(total - total[0]).max())
    print(f"EMT Cu3Ni, max |E - E0| over 80 fs: {errors[0]:.2e} eV (dt 4 fs), {errors[1]:.2e} eV (dt 2 fs)")
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_frames_every_second_step_are_every_second_frame_of_the_every_step_run(tmp_path, ref_file):
    out = generate(ase_config(protocol_record_every=2), tmp_path / "every2.h5", progress=False)
    with h5py.File(out) as f, h5py.File(ref_file) as ref:
        assert f.attrs["frame_interval_fs"] == 4.0
        for name in ("condition_000/segment_0000", "condition_001/segment_0001"):
            g = f[name]
            np.testing.assert_array_equal(g["time_fs"][()], np.arange(16) * 4.0)
            np.testing.assert_array_equal(g["step"][()], np.arange(16) * 2)
            for key in ("positions", "momenta", "forces", "potential_energy"):  # the same trajectory, thinned
                np.testing.assert_array_equal(g[key][()], ref[name][key][::2], err_msg=f"{name}/{key}")


@pytest.mark.parametrize("thermostat", ["csvr", "langevin", "ou"])
def test_each_thermostat_brings_the_kinetic_temperature_to_the_target(tmp_path, thermostat):
    """Mean kinetic temperature (3N - 3 degrees of freedom) of 6 NVE segments after 400 fs (10 thermostat
    times) of equilibration, 16 atoms at 600 K. One segment's mean scatters by 16-19 % (measured over 40
    segments; sqrt(2/45) = 21 % for one frame), so 6 segments' by ~7.5 %: the +-30 % bound is 4 standard
    deviations, and still catches a factor 2 in the units of T, of the momenta or of the thermostat's time.
    Measured mean/target: here csvr 1.04, langevin 0.88, ou 1.01; over 40 segments csvr 1.04, langevin 0.93,
    0.98 and 1.04 for three seeds."""
    cfg = ase_config(temperatures=[600], protocol_thermostat=thermostat, protocol_equilibration_steps=200,
                     protocol_decorrelation_steps=30, protocol_segments=6, protocol_segment_steps=10)
    ds = load_dataset(generate(cfg, tmp_path / f"{thermostat}.h5", progress=False))
    temperatures = [2 * s.kinetic_energy().mean() / ((3 * s.n_atoms - 3) * KB) for s in ds]
    ratio = np.mean(temperatures) / 600.0
    print(f"{thermostat}: segment temperatures {np.round(temperatures).tolist()} K, mean/target {ratio:.3f}")
    assert 0.7 < ratio < 1.3


# ---------------------------------------------------------------------------------------------- resume, parts
def test_resume_after_interruptions_is_bitwise_identical(tmp_path, ref_file):
    cfg = ase_config()
    out = tmp_path / "resumed.h5"
    generate(cfg, out, progress=False, stop_after_segments=1)  # inside condition 0
    generate(cfg, out, progress=False, stop_after_segments=2)  # across the condition boundary
    ticks = []
    with pytest.raises(StopRequested):  # a signal: stop at the next progress tick, mid-segment
        generate(cfg, out, progress=False, stop_requested=lambda: ticks.append(1) or len(ticks) > 3)
    with h5py.File(out) as f:
        assert sorted(f["condition_001"]) == ["atomic_numbers", "cell", "equilibrated", "lammps_origin", "masses",
                                              "segment_0000", "types"]
    generate(cfg, out, progress=False)
    assert_same_file(ref_file, out)


def test_parts_merge_into_the_single_process_file(tmp_path, ref_file):
    cfg = ase_config()
    parts = [generate(cfg, tmp_path / f"part_{k}.h5", progress=False, part=(k, 2)) for k in (0, 1)]
    with h5py.File(parts[1]) as f:
        assert f.attrs["part"] == "1/2" and [k for k in f if k.startswith("condition_")] == ["condition_001"]
    merged = tmp_path / "merged.h5"
    assert data_cli(["merge-data", str(merged), str(parts[1]), str(parts[0])]) == 0
    same_arrays(ref_file, merged)  # bit for bit
    assert_same_file(ref_file, merged, ignore=("created_utc", "merged_from_json"))  # and every attribute
    # a merged file is a plain file: it resumes (and extends) without --part
    generate(ase_config(protocol_segments=3), merged, progress=False, stop_after_segments=1)
    assert len(load_dataset(merged)) == 5


def test_merge_refuses_missing_overlapping_unfinished_and_foreign_parts(tmp_path):
    cfg = ase_config(temperatures=[300, 400, 500], protocol_equilibration_steps=2, protocol_decorrelation_steps=0,
                     protocol_segments=1, protocol_segment_steps=2)
    parts = [generate(cfg, tmp_path / f"part_{k}.h5", progress=False, part=(k, 2)) for k in (0, 1)]
    with pytest.raises(ConfigError, match=r"no part holds condition_001 of the 3 condition\(s\) \(--part 1/2 would"):
        merge_parts(tmp_path / "a.h5", [parts[0]])
    twice = tmp_path / "twice.h5"
    shutil.copy(parts[0], twice)
    with pytest.raises(ConfigError, match=r"condition_000 is in both .*part_0.h5 and .*twice.h5"):
        merge_parts(tmp_path / "b.h5", [parts[0], twice, parts[1]])
    foreign = tmp_path / "foreign.h5"
    shutil.copy(parts[1], foreign)
    with h5py.File(foreign, "a") as f:
        f.attrs["config_digest"] = "0" * 64
    with pytest.raises(ConfigError, match=r"foreign.h5 was generated with another config"):
        merge_parts(tmp_path / "c.h5", [parts[0], foreign])
    unfinished = tmp_path / "unfinished.h5"
    shutil.copy(parts[1], unfinished)
    with h5py.File(unfinished, "a") as f:
        del f["condition_001/segment_0000"]
    with pytest.raises(ConfigError, match=r"holds 0 of 1 segments of condition_001; finish it"):
        merge_parts(tmp_path / "d.h5", [parts[0], unfinished])
    with pytest.raises(ConfigError, match=r"exists; give a new output"):
        merge_parts(parts[0], [parts[1]])
    assert not any(p.name.startswith(("a.h5", "b.h5", "c.h5", "d.h5")) for p in tmp_path.iterdir())
    # a part's file is resumed by its own part only
    with pytest.raises(ConfigError, match=r"holds part 0/2; this run is part 1/2"):
        generate(cfg, parts[0], progress=False, part=(1, 2))
    with pytest.raises(ConfigError, match=r"holds part 0/2; this run is without --part"):
        generate(cfg, parts[0], progress=False)
    for text in ("2/2", "1", "a/b", "-1/3"):
        with pytest.raises(ConfigError, match=r"0 <= K < N, e.g. --part 0/4"):
            parse_part(text)
    with pytest.raises(ConfigError, match=r"has 3 condition\(s\), so part 3 would hold none; use N <= 3"):
        generate(cfg, tmp_path / "e.h5", progress=False, part=(3, 4))


# ---------------------------------------------------------------------------------------------- errors
def test_a_calculator_that_fails_mid_segment_leaves_only_finished_segments(tmp_path, monkeypatch, ref_file):
    """Phase calls: condition 0's equilibration 1 + 60, segment 0 1 + 20 + 30, segment 1 from call 113; call 150
    is in segment 1's NVE part. The file keeps segment 0 and nothing of segment 1; the re-run gives the
    arrays of the uninterrupted run (the same EMT behind another calculator spec)."""
    (tmp_path / "flaky.py").write_text(FLAKY_CALCULATOR)
    cfg = load_config(config_file(tmp_path, calculator={"file": "flaky.py"}))
    out = tmp_path / "flaky.h5"
    monkeypatch.setenv("ACTIONMD_TEST_FAIL_AT", "150")
    with pytest.raises(EngineError, match=r"condition 0 \(T=300 K\), segment 1 NVE, step \d+: the calculator "
                                          r"flaky.py failed: RuntimeError: device lost"):
        generate(cfg, out, progress=False)
    with h5py.File(out) as f:
        assert sorted(k for k in f["condition_000"] if k.startswith("segment")) == ["segment_0000"]
        assert "condition_001" not in f
    monkeypatch.delenv("ACTIONMD_TEST_FAIL_AT")
    generate(cfg, out, progress=False)
    same_arrays(ref_file, out)


def test_a_changed_calculator_file_is_refused_and_a_moved_one_resumes(tmp_path):
    tiny = dict(temperatures=[300], protocol_equilibration_steps=2, protocol_decorrelation_steps=0,
                protocol_segments=1, protocol_segment_steps=2)
    calc = tmp_path / "a" / "calc.py"
    calc.parent.mkdir()
    calc.write_text("from ase.calculators.emt import EMT\n\ndef make_calculator():\n    return EMT()\n")
    out = tmp_path / "calc.h5"
    generate(load_config(config_file(calc.parent, calculator={"file": "calc.py"}, **tiny)), out, progress=False)
    moved = tmp_path / "b" / "calc.py"
    moved.parent.mkdir()
    shutil.move(calc, moved)
    more = dict(tiny, protocol_segments=2)
    generate(load_config(config_file(moved.parent, calculator={"file": "calc.py"}, **more)), out, progress=False)
    assert len(load_dataset(out)) == 2
    moved.write_text(moved.read_text() + "# changed\n")
    with pytest.raises(ConfigError, match=r"different config; changed: calculator.sha256"):
        generate(load_config(config_file(moved.parent, calculator={"file": "calc.py"}, **more)), out, progress=False)
    with pytest.raises(ConfigError, match=r"different config; changed: .*calculator.kwargs.asap_cutoff: '<absent>' -> True"):
        generate(ase_config(calculator={"factory": "ase.calculators.emt:EMT", "kwargs": {"asap_cutoff": True}},
                            **more), out, progress=False)


CALCULATOR_FILES = {
    "no_factory.py": "X = 1\n",
    "no_kwargs.py": "from ase.calculators.emt import EMT\n\ndef make_calculator():\n    return EMT()\n",
    "no_forces.py": ("from ase.calculators.calculator import Calculator\n\nclass EnergyOnly(Calculator):\n"
                     "    implemented_properties = ['energy']\n    def calculate(self, atoms=None, properties=None, "
                     "system_changes=None):\n        super().calculate(atoms, properties, system_changes)\n"
                     "        self.results = {'energy': 0.0}\n\ndef make_calculator():\n    return EnergyOnly()\n"),
    "nan_forces.py": ("import numpy as np\nfrom ase.calculators.emt import EMT\n\nclass NaN(EMT):\n"
                      "    def calculate(self, *args, **kwargs):\n        super().calculate(*args, **kwargs)\n"
                      "        self.results['forces'][0, 0] = np.nan\n\ndef make_calculator():\n    return NaN()\n"),
}


@pytest.mark.parametrize("changes, error, pattern", [
    ({"calculator": {"factory": "no_such_module_xyz:Calc"}}, ConfigError,
     r"calculator.factory 'no_such_module_xyz:Calc': cannot import module 'no_such_module_xyz' \(ModuleNotFoundError"),
    ({"calculator": {"factory": "ase.calculators.emt:NoSuch"}}, ConfigError,
     r"module 'ase.calculators.emt' has no 'NoSuch'; check the name after the colon"),
    ({"calculator": {"factory": "ase.calculators.emt:parameters"}}, ConfigError,
     r"'parameters' is a dict, not a calculator class or function"),
    ({"calculator": {"file": "no_kwargs.py", "kwargs": {"no_such_option": 1}}}, ConfigError,
     r"no_kwargs.py': making the calculator with kwargs \{'no_such_option': 1\} failed: TypeError: .*no_such_option"),
    ({"calculator": {"file": "no_factory.py"}}, ConfigError, r"no_factory.py' defines no make_calculator\(\)"),
    ({"calculator": {"file": "no_forces.py"}}, EngineError,
     r"equilibration: the calculator no_forces.py does not compute energy and forces"),
    ({"calculator": {"file": "nan_forces.py"}}, EngineError,
     r"condition 0 \(T=300 K\), equilibration, step 0: the calculator nan_forces.py returned non-finite"),
    ({"elements": ["Cu", "Si"], "compositions": [{"Cu": 0.5, "Si": 0.5}], "structure": {
        "lattice": "fcc", "a": 3.6, "repeat": [2, 2, 1]}}, EngineError,
     r"failed on the structure \(species Cu, Si\): NotImplementedError: No EMT-potential for Si; use a calculator"),
    ({"protocol_dt": 60.0}, EngineError,
     r"condition 0 \(T=300 K\), equilibration \(csvr thermostat\), step \d+: an atom moved .* Å in one step of 60 fs"
     r".*the trajectory blew up: reduce protocol.dt"),
    ({"protocol_dt": 60.0, "protocol_equilibration_steps": 0, "protocol_decorrelation_steps": 0}, EngineError,
     r"condition 0 \(T=300 K\), segment 0 NVE, step \d+: an atom moved"),
])
def test_bad_input_gets_a_one_line_error_naming_the_fix(tmp_path, changes, error, pattern):
    for name, text in CALCULATOR_FILES.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(error, match=pattern) as info:
        generate(load_config(config_file(tmp_path, **changes)), tmp_path / "out.h5", progress=False)
    assert "\n" not in str(info.value)
    with h5py.File(tmp_path / "out.h5") as f:  # nothing stored as a finished segment
        assert not [name for c in f.values() for name in c if name.startswith("segment_")]


@pytest.mark.parametrize("changes, pattern", [
    ({"calculator": {"factory": "EMT"}}, r"'calculator.factory' must be 'package.module:Name'"),
    ({"calculator": {"file": "missing.py"}}, r"'calculator.file': file .*missing.py' does not exist"),
    ({"calculator": {"factory": "a:B", "file": "c.py"}}, r"exactly one of 'factory' or 'file'"),
    ({"calculator": None}, r"missing required key\(s\) \['calculator'\]"),
    ({"potential": ["pair_style eam"]}, r"'potential' holds LAMMPS lines, which engine: ase does not run; give"),
    ({"engine": "lammps", "units": "metal", "potential": ["pair_style eam"]}, r"'calculator' is for engine: ase"),
    ({"units": "real"}, r"engine: ase computes in ASE units \(eV, Å\), so 'units' 'real' does not apply"),
    ({"structure": {"water_box": {"molecules": 8}}}, r"water_box' builds a LAMMPS molecular topology.*file: water"),
    ({"structure": {"lattice": "hex", "a": 3.0, "repeat": 2}}, r"engine: ase builds the lattices \['fcc'"),
    ({"engine": "gromacs"}, r"'engine' must be one of \['lammps', 'ase'\]"),
])
def test_bad_configs_are_refused_on_loading(tmp_path, changes, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(config_file(tmp_path, **changes))
    assert "\n" not in str(info.value)


def test_the_cli_gives_exit_status_2_and_one_line(tmp_path, monkeypatch):
    path = config_file(tmp_path, elements=["Cu", "Si"], compositions=[{"Cu": 0.5, "Si": 0.5}],
                       structure={"lattice": "fcc", "a": 3.6, "repeat": [1, 1, 1]})
    result = run_cli(str(path), "-o", str(tmp_path / "x.h5"), "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "No EMT-potential for Si" in result.stderr
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"engine: ase runs in one process; .* --part K/N instead of mpirun"):
        generate(load_config(path), tmp_path / "y.h5", progress=False)


def test_a_built_in_system_runs_with_a_calculator_instead_of_its_potential():
    cfg = resolve_config({"system": "cuni", "engine": "ase", "calculator": {"factory": "ase.calculators.emt:EMT"}})
    assert "potential" not in cfg and cfg["units"] == "metal" and cfg["structure"]["lattice"] == "fcc"


def test_lattices_and_a_crystal_have_the_lammps_engines_sites(tmp_path):
    """The ASE engine numbers lattice sites as the LAMMPS engine does, so one composition seed puts the same
    species on the same sites in both; a crystal comes from the structures helper (zincblende here)."""
    from actionmd.data.ase_engine import AseEngine
    from actionmd.data.lammps_run import LammpsEngine, Simulation
    from actionmd.data.protocol import SEED_COMPOSITION, seed

    cfg = ase_config()
    comp_seed = seed(cfg["seed"], 0, SEED_COMPOSITION)
    types, positions, cell = AseEngine(cfg)._structure(cfg["compositions"][0], comp_seed)
    lammps_cfg = load_config("cuni", ["structure.repeat=[2,2,1]", "structure.a={Cu: 3.6, Ni: 3.52}"])
    engine = LammpsEngine(lammps_cfg)
    with Simulation(lammps_cfg, engine.comm, None) as sim:
        sim.build({"Cu": 0.75, "Ni": 0.25}, comp_seed)
        state = sim.state()
        _, lammps_cell = sim.cell()
    np.testing.assert_array_equal(types, state.type)
    np.testing.assert_allclose(positions, state.x, atol=1e-9)
    np.testing.assert_allclose(cell, lammps_cell, atol=1e-12)
    for lattice, n in (("bcc", 2), ("sc", 1), ("diamond", 8), ("hcp", 4)):
        cfg = ase_config(structure={"lattice": lattice, "a": 3.0, "repeat": [1, 1, 1]}, compositions=None)
        assert len(AseEngine(cfg)._structure(None, 1)[0]) == n
    cfg = ase_config(elements=["Cu", "Au"], compositions=None,
                     structure={"crystal": "zincblende", "species": ["Cu", "Au"], "a": 5.0, "repeat": [1, 1, 1]})
    types, _, _ = AseEngine(cfg)._structure(None, 1)
    assert sorted(types.tolist()) == [1] * 4 + [2] * 4


# ---------------------------------------------------------------------------------------------- downstream
def test_evaluate_with_the_ase_config_re_evaluates_energies_with_its_calculator(tmp_path, ref_file):
    from ase import Atoms
    from ase.calculators.emt import EMT

    from actionmd.evaluation.energy import load_system
    from actionmd.evaluation.side_by_side import evaluate
    from actionmd.evaluation.trajectory import Trajectory

    seg = load_dataset(ref_file).segments[0]
    traj = Trajectory(numbers=seg.atomic_numbers, masses=seg.masses, positions=seg.positions,
                      cells=np.repeat(seg.cell[None], seg.n_frames, axis=0), interval_fs=seg.frame_interval_fs,
                      velocities=seg.momenta / seg.masses[None, :, None], unwrapped=True, source="ref")
    results = evaluate({"ref": traj}, system=str(config_file(tmp_path)), progress=False)
    energy = results["runs"]["ref"]["energy"]
    assert energy["source"].startswith("ASE calculator ase.calculators.emt:EMT")
    potential = energy["potential_eV_per_atom"] * seg.n_atoms
    np.testing.assert_allclose(potential, seg.potential_energy, rtol=0, atol=1e-12)
    atoms = Atoms(numbers=seg.atomic_numbers, positions=seg.positions[7], cell=seg.cell, pbc=True, calculator=EMT())
    assert potential[7] == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    # a data file's stored config is data: it never builds a calculator
    with pytest.raises(ConfigError, match=r"cannot build an ASE calculator, which is code; give the config file"):
        load_system(reference_config(ref_file))


def test_training_reads_the_data_and_says_why_it_does_not_re_evaluate_its_energies(ref_file, tmp_path):
    """Training takes the ASE engine's frames as it takes LAMMPS's; its closing rollout says why there is no
    energy drift: a calculator is never built from a data file's stored config."""
    from actionmd.models import build_learned_model, scales_from_frames
    from actionmd.training import Trainer, TrainingOptions, split_by_trajectory
    from actionmd.training.config import _reference_energy
    from actionmd.training.dataset import frames_from_dataset

    dataset = load_dataset(ref_file)
    trajectories = frames_from_dataset(dataset, stride_fs=8.0, every=4)
    assert len(trajectories) == 4 and len(trajectories[0]) == 7
    np.testing.assert_array_equal(trajectories[0][0].numbers, dataset.segments[0].atomic_numbers)
    energy, why = _reference_energy([str(ref_file)])
    assert energy is None and "the reference is an ASE calculator" in why
    frames = [f for trajectory in trajectories for f in trajectory]
    module, meta = build_learned_model(["Cu", "Ni"], stride=8.0, cutoff=4.0, features=8, layers=1, dtype="float32",
                                       **scales_from_frames(frames, 8.0))
    training, validation = split_by_trajectory(trajectories, 0.25, seed=0)
    options = TrainingOptions(epochs=1, pretrain_epochs=0, batch_frames=4, rollout_steps=2, progress=False)
    trainer = Trainer(module, meta, training, validation, tmp_path / "run", options, reference_energy=energy,
                      no_reference_energy=why)
    trainer.fit()
    assert trainer.summary["rollout"]["energy"] == {"not_evaluated": why}


def test_chgnet_generates_a_tiny_file(tmp_path):
    """The optional extra (pip install actionmd[chgnet]): CHGNet as the reference, 8 atoms, a few steps."""
    pytest.importorskip("chgnet")
    cfg = ase_config(calculator={"factory": "chgnet.model.dynamics:CHGNetCalculator", "kwargs": {"use_device": "cpu"}},
                     structure={"lattice": "fcc", "a": 3.6, "repeat": [2, 1, 1]}, temperatures=[300],
                     protocol_equilibration_steps=4, protocol_decorrelation_steps=2, protocol_segments=1,
                     protocol_segment_steps=4)
    seg = load_dataset(generate(cfg, tmp_path / "chgnet.h5", progress=False)).segments[0]
    assert seg.positions.shape == (5, 8, 3)
    dq, dp = vv_residuals(seg)
    assert dq < 1e-10 and dp < 1e-10


def test_the_builtin_chgnet_system_without_chgnet_names_the_extra_to_install(monkeypatch):
    """si-chgnet is a built-in system whose calculator is an optional extra: without it, one line says how."""
    from actionmd.data.ase_engine import make_calculator
    for name in ("chgnet", "chgnet.model", "chgnet.model.dynamics"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # import fails as if not installed
    cfg = load_config("si-chgnet")
    assert cfg["engine"] == "ase" and cfg["elements"] == ["Si"]
    with pytest.raises(ConfigError, match=r"cannot import module 'chgnet.model.dynamics' .*; "
                                          r"`pip install actionmd\[chgnet\]`, or fix the module path"):
        make_calculator(cfg["calculator"])
