"""fix actionmd with forces from other sources (fix addforce, walls, fix langevin, a pair style
with pair_forces yes): half kicks of dt/2 f/m before and after the map (Strang splitting), and
the per-run timing breakdown of the fix."""
import numpy as np
import pytest

import lmp_models as models
from lmp_helpers import read_dump
from lmp_inputs import AR, KB_EV, argon_data, lj_script, oscillator_box, velocities_to_real_units

FTM2V = {"metal": 1.0 / 1.0364269e-4, "real": 1.0 / 48.88821291 / 48.88821291}  # LAMMPS force->ftm2v
PER_FS = {"metal": 1000.0, "real": 1.0}  # LAMMPS velocity units per Å/fs
DUMP_V = "dump d all custom {every} traj.dump id x y z vx vy vz\ndump_modify d sort id format float %.17g"


@pytest.mark.parametrize("units,np_", [("real", 1), ("real", 2), ("metal", 1)])
def test_constant_force_changes_total_momentum_by_N_F_t(run_lmp, model_dir, units, np_):
    """fix addforce F on each of N atoms: every stride is a kick of dt/2 F, the map (which conserves
    the total momentum to round-off for this translation-invariant action) and a kick of dt/2 F,
    so after n strides P - P0 = N F n dt (times ftm2v, in mass * velocity units) to round-off."""
    steps = 20
    argon_data(run_lmp.dir / "ar.data")
    if units == "real":
        velocities_to_real_units(run_lmp.dir / "ar.data")
        force = np.array([0.1, -0.05, 0.02])  # kcal/mol/Å
    else:
        force = np.array([0.1, -0.05, 0.02]) / 23.06  # eV/Å, about the same
    dt = 20.0 / PER_FS[units]
    post = f"fix push all addforce {force[0]:.17g} {force[1]:.17g} {force[2]:.17g}\n" + DUMP_V.format(every=steps)
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=steps, post=post, units=units, timestep=dt,
                          procs="processors 2 1 1" if np_ == 2 else ""), np=np_)
    assert r.returncode == 0, r.output[-3000:]
    f = read_dump(run_lmp.dir / "traj.dump")
    natoms = len(f[0])
    momentum = {step: AR * frame[:, 4:7].sum(axis=0) for step, frame in f.items()}
    expected = natoms * force * steps * dt * FTM2V[units]
    assert np.abs(expected).max() > 0.1 * np.abs(AR * f[0][:, 4:7]).sum(axis=0).max()  # a real change
    got = momentum[steps] - momentum[0]
    assert np.abs(got - expected).max() < 1e-11 * np.abs(expected).max(), (got, expected)


def _harmonic_strang(q, v, force, h, m, k, steps, units="metal"):
    """Reference: kick dt/2 f/m, one stride of the implicit midpoint map of S = h (p^2/2m + k q^2/2)
    (closed form), kick dt/2 f/m at the new positions. q in Å, v in LAMMPS velocity units."""
    dt, per_fs, ftm2v = h / PER_FS[units], PER_FS[units], FTM2V[units]
    a, b = h / (2 * m), h * k / 2
    for _ in range(steps):
        v = v + 0.5 * dt * ftm2v * force(q) / m
        p = m * v / per_fs
        q, p = (q * (1 - a * b) + 2 * a * p) / (1 + a * b), (p * (1 - a * b) - 2 * b * q) / (1 + a * b)
        v = p / m * per_fs
        v = v + 0.5 * dt * ftm2v * force(q) / m
    return q, v


def _lj_cut_forces(q, eps, sigma, rc):
    """Forces of pair_style lj/cut (eV/Å) among atoms far from the box faces (no images)."""
    f = np.zeros_like(q)
    for i in range(len(q)):
        for j in range(i + 1, len(q)):
            d = q[i] - q[j]
            r2 = d @ d
            if r2 < rc * rc:
                s6 = (sigma * sigma / r2) ** 3
                fpair = 24.0 * eps * s6 * (2.0 * s6 - 1.0) / r2
                f[i] += fpair * d
                f[j] -= fpair * d
    return f


CONSTANT_FORCE = np.array([0.3, -0.2, 0.1])  # eV/Å


@pytest.mark.parametrize("np_", [1, 2])
@pytest.mark.parametrize("source", ["addforce", "lj/cut pair_forces yes"])
def test_forces_are_half_kicks_around_the_map(run_lmp, source, np_):
    """Atoms on springs (the map has a closed form) with an extra force from fix addforce, or from
    a real pair style allowed by 'pair_forces yes': 5 strides agree with the Strang splitting
    kick(dt/2) - map - kick(dt/2) computed here, on 1 and 2 ranks."""
    h, m, steps = 10.0, AR, 5
    w = (1.0 if source == "addforce" else 0.1) / h  # weak springs for the pair: no atom reaches the origin
    k = m * w * w
    models.harmonic(run_lmp.dir / "harm.pt", h, m, k)
    rng = np.random.default_rng(11)
    if source == "addforce":
        q0 = rng.uniform(-2.0, 2.0, (4, 3))
        fx, fy, fz = CONSTANT_FORCE
        extra, fix_kw, force = f"fix push all addforce {fx} {fy} {fz}", "", lambda q: CONSTANT_FORCE
    else:  # three atoms about 3.2 Å apart (repulsive), on both sides of x = 0
        q0 = np.array([[-1.6, 0.0, 0.0], [1.6, 0.0, 0.0], [0.0, 2.8, 0.0]]) + rng.uniform(-0.1, 0.1, (3, 3))
        extra, fix_kw = "", "pair_forces yes"
        force = lambda q: _lj_cut_forces(q, 0.0104, 3.4, 6.0)  # noqa: E731
    v0 = rng.normal(0.0, 2.0, q0.shape)  # Å/ps
    vels = "\n".join(f"set atom {i + 1} vx {a:.17g} vy {b:.17g} vz {c:.17g}" for i, (a, b, c) in enumerate(v0))
    script = oscillator_box([1] * len(q0), q0, [m], h) + f"""
{vels}
{extra}
fix int all actionmd harm.pt types Ar tol 1e-12 {fix_kw}
{DUMP_V.format(every=steps)}
run {steps}
"""
    if source != "addforce":
        script = script.replace("pair_style zero 2.0\npair_coeff * *", "pair_style lj/cut 6.0\npair_coeff * * 0.0104 3.4")
    r = run_lmp(script.replace("create_box", "processors 2 1 1\ncreate_box") if np_ == 2 else script, np=np_)
    assert r.returncode == 0, r.output[-3000:]
    got = read_dump(run_lmp.dir / "traj.dump")[steps]
    q, v = _harmonic_strang(q0, v0, force, h, m, k, steps)
    assert np.abs(force(q0)).max() > 0.05  # the extra force is not negligible...
    q_nokick, _ = _harmonic_strang(q0, v0, lambda q: 0.0 * q, h, m, k, steps)
    assert np.abs(q - q_nokick).max() > 1e-3  # ... and changes the trajectory far beyond round-off
    assert np.abs(got[:, 1:4] - q).max() < 1e-11
    assert np.abs(got[:, 4:7] - v).max() < 1e-9


@pytest.mark.parametrize("wall", [True, False], ids=["wall", "no-wall"])
def test_wall_keeps_atoms_in_a_non_periodic_box(run_lmp, model_dir, wall):
    """An argon crystal pushed towards z = zlo (fix addforce) in a box that is not periodic in z:
    fix wall/lj93 at zlo stops it (no atom is lost and the crystal reaches the wall's repulsive range);
    without the wall atoms leave the box within the same run."""
    steps, zlo = 100, -4.0
    L = argon_data(run_lmp.dir / "ar.data")
    data = (run_lmp.dir / "ar.data").read_text()
    assert f"0 {L} zlo zhi" in data
    (run_lmp.dir / "ar.data").write_text(data.replace(f"0 {L} zlo zhi", f"{zlo} {L + 20} zlo zhi"))
    post = "fix push all addforce 0.0 0.0 -0.02\n"
    if wall:
        post += "fix wall all wall/lj93 zlo EDGE 0.0104 3.4 8.5\n"
    post += "dump d all custom 10 traj.dump id x y z vx vy vz\ndump_modify d sort id format float %.17g"
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=steps, post=post, procs="boundary p p f"))
    if not wall:
        assert r.returncode != 0
        assert "Lost atoms" in r.output, r.output[-3000:]
        return
    assert r.returncode == 0, r.output[-3000:]
    frames = read_dump(run_lmp.dir / "traj.dump")
    assert sorted(frames) == list(range(0, steps + 1, 10))
    zmin = min(frame[:, 3].min() for frame in frames.values())
    assert zlo < zmin < zlo + 3.4, zmin  # reached the wall's repulsive range, stayed in the box
    assert frames[steps][:, 3].mean() < frames[0][:, 3].mean() - 1.0  # the crystal did move down


def test_lammps_fix_langevin_thermalises_atoms_on_springs(run_lmp):
    """LAMMPS's own fix langevin with fix actionmd: its force -gamma m v + noise is computed from the
    velocities after the map and applied as the final half kick and again as the next initial half kick.
    For a map that preserves H (independent oscillators), the stationary covariance of this linear
    scheme (discrete Lyapunov equation) gives the full-step kinetic energy exactly 3/2 N kB T, while the
    positions are hot by 1/(1 - gamma dt / 2) (= 1/0.9 here): both are checked, the second one
    confirming where the kicks sit.

    Tolerance: 5 sigma, sigma = sqrt(2 / (3 N M) * (1 + rho) / (1 - rho)) for M samples 5 strides
    (= damp) apart with correlation rho <= exp(-1), as in the thermostat tests of the fix."""
    h, m, natoms, temperature, damp = 10.0, AR, 300, 300.0, 0.05  # damp in ps: gamma dt = 0.2
    w = 1.0 / h
    k = m * w * w  # u/fs^2
    models.harmonic(run_lmp.dir / "harm.pt", h, m, k)
    rng = np.random.default_rng(8)
    script = oscillator_box([1] * natoms, rng.uniform(-0.05, 0.05, (natoms, 3)), [m], h) + f"""
fix int all actionmd harm.pt types Ar
fix thermostat all langevin {temperature} {temperature} {damp} 6151
thermo_style custom step ke
thermo_modify format float %.17g
thermo 5
dump d all custom 5 traj.dump id x y z
dump_modify d sort id format float %.17g
run 2500
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    rows = [row for row in r.thermo() if row["Step"] >= 500]
    rho = np.exp(-1.0)
    sigma = np.sqrt(2 / (3 * natoms * len(rows)) * (1 + rho) / (1 - rho))
    expected = 1.5 * natoms * KB_EV * temperature
    ke = np.mean([row["KinEng"] for row in rows])
    assert abs(ke / expected - 1) < 5 * sigma, (ke / expected, 5 * sigma)
    frames = read_dump(run_lmp.dir / "traj.dump")
    k_ev = k * 103.642696  # u/fs^2 -> eV/Å^2 (1 u Å^2/fs^2 = 103.64 eV)
    pe = np.mean([0.5 * k_ev * (f[:, 1:4] ** 2).sum() for step, f in frames.items() if step >= 500])
    hot = 1.0 / (1.0 - 0.5 * h / (damp * 1000.0))
    assert abs(pe / (expected * hot) - 1) < 5 * sigma, (pe / expected, hot, 5 * sigma)


def test_timing_breakdown(run_lmp, model_dir):
    """The fix prints a timing summary at the end of each run and exposes the cumulative seconds of
    the run as f_ID[5] (total) .. f_ID[9] (model, communication, edge list, rest of the solver)."""
    argon_data(run_lmp.dir / "ar.data")
    script = lj_script(model_dir / "lj.pt", steps=10, procs="processors 2 1 1").replace(
        "f_int[1] f_int[2] f_int[3] f_int[4]", "f_int[1] f_int[5] f_int[6] f_int[7] f_int[8] f_int[9]")
    r = run_lmp(script + "run 10\n", np=2)
    assert r.returncode == 0, r.output[-3000:]
    for section in ("Model", "Comm", "Edges", "Solver"):
        assert sum(line.startswith(f"  {section} ") for line in r.log.splitlines()) == 2, r.log[-3000:]
    assert r.log.count("fix int (actionmd) timing: 10 steps") == 2
    rows = r.thermo()  # of the second run: the timers count from its start
    assert [row["Step"] for row in rows] == [10, 20]
    first, last = rows[0], rows[-1]
    assert first["f_int[5]"] == 0.0
    parts = [last[f"f_int[{i}]"] for i in (6, 7, 8, 9)]
    assert last["f_int[5]"] > 0 and all(x >= 0 for x in parts[:3]) and parts[0] > 0
    assert abs(sum(parts) - last["f_int[5]"]) < 1e-9 * last["f_int[5]"] + 1e-12
