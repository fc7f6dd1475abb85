"""A learned message-passing model (2 layers, interaction_range 3 x cutoff) in LAMMPS: on 1, 2 and 4 ranks it
takes the same steps as the Python engine. The fix builds edges only around atoms whose outputs can reach
its subdomain (interaction_range - cutoff); this proves that pruning is exact for multi-layer models."""
import numpy as np
import pytest
import torch

from lmp_helpers import read_dump
from lmp_inputs import AR, argon_data, lj_script

CUTOFF = 3.8


def message_passing_model(path):
    """Random but tame weights: a 2-layer action (with angular moments) and predictor whose every term is
    exercised."""
    models = pytest.importorskip("actionmd.models")
    model_file = pytest.importorskip("actionmd.model_file")
    module, meta = models.build_learned_model(["Ar"], stride=20.0, cutoff=CUTOFF, features=8, layers=2,
                                              predictor_layers=2, angular=True, dtype="float64", energy_scale=2e-4,
                                              seed=4)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.15)
    model_file.export_model(module, path, meta)
    return meta


@pytest.mark.parametrize("mode", ["action", "predictor"])
def test_message_passing_model_matches_python_engine_on_1_2_and_4_ranks(run_lmp, mode):
    """mode predictor checks the predictor's wider range (3 x cutoff); the solved action map does not
    depend on the guess, so mode action checks the action's (2 x cutoff). With ghosts, the fix calls the
    model's forward_owned/predict_owned, which prune layer by layer; 4 ranks split two directions."""
    action_map = pytest.importorskip("actionmd.action_map")
    solver = pytest.importorskip("actionmd.solver")
    meta = message_passing_model(run_lmp.dir / "mp.pt")
    assert meta["interaction_range"] == pytest.approx(3 * CUTOFF)
    loaded = pytest.importorskip("actionmd.model_file").load_model(run_lmp.dir / "mp.pt", device="cpu")
    assert hasattr(loaded.module, "forward_owned") and hasattr(loaded.module, "predict_owned")
    L = argon_data(run_lmp.dir / "ar.data", n=4)  # 21 Å: a 2-rank subdomain is narrower than the range
    steps = 10
    dumps = {}
    for np_ in (1, 2, 4):
        post = f"""dump d all custom {steps} traj{np_}.dump id x y z vx vy vz ix iy iz
dump_modify d sort id format float %.17g"""
        script = lj_script("mp.pt", steps=steps, post=post, extra_fix=f"tol 1e-12 mode {mode}",
                           pair=f"pair_style zero {CUTOFF}\npair_coeff * *", comm="comm_modify cutoff 16.0",
                           procs={1: "", 2: "processors 2 1 1", 4: "processors 2 2 1"}[np_])
        r = run_lmp(script, np=np_)
        assert r.returncode == 0, r.output[-3000:]
        dumps[np_] = read_dump(run_lmp.dir / f"traj{np_}.dump")
    unwrap = lambda f: f[:, 1:4] + f[:, 7:10] * L
    first = dumps[1][0]
    q, p = unwrap(first), AR * first[:, 4:7] / 1000.0  # Å, u·Å/fs
    amap = action_map.ActionMap(str(run_lmp.dir / "mp.pt"), mode=mode,
                                solver=solver.SolverOptions(tol=1e-12, method="newton"))
    types = amap.types_of([18] * len(q))
    for _ in range(steps):
        q, p, _ = amap.step(q, p, types, np.diag([L, L, L]), [True] * 3)
    assert np.abs(p - AR * first[:, 4:7] / 1000.0).max() > 1e-4  # the model really acts on the momenta
    for np_, frames in dumps.items():
        last = frames[steps]
        assert np.abs(unwrap(last) - q).max() < 1e-9, np_
        assert np.abs(AR * last[:, 4:7] / 1000.0 - p).max() < 1e-9, np_


@pytest.mark.parametrize("solver", ["anderson", "newton"])
def test_a_rank_that_owns_no_atoms_but_holds_ghosts_agrees_with_one_rank(run_lmp, solver):
    """A slab in a long non-periodic box, split by 'processors 2 1 1' so that one rank owns no atom but
    holds the slab's edge as ghosts: it calls forward_owned(n_owned=0) (and, with Newton, its Hessian-vector
    products) and must contribute nothing but the ghosts' share of the communication."""
    message_passing_model(run_lmp.dir / "mp.pt")
    argon_data(run_lmp.dir / "ar.data", n=4, xbox=50.0, xshift=1.0)  # atoms in x < 23 Å; the ranks split at 25
    steps = 10
    ends = {}
    for np_ in (1, 2):
        post = f"""dump d all custom {steps} traj{np_}.dump id x y z vx vy vz
dump_modify d sort id format float %.17g
"""
        script = lj_script("mp.pt", steps=steps, post=post, extra_fix=f"tol 1e-12 solver {solver}",
                           pair=f"pair_style zero {CUTOFF}\npair_coeff * *", comm="comm_modify cutoff 16.0",
                           procs="boundary f p p" + ("\nprocessors 2 1 1" if np_ == 2 else ""))
        r = run_lmp(script, np=np_)
        assert r.returncode == 0, r.output[-3000:]
        if np_ == 2:
            assert "Nlocal:            128 ave         256 max           0 min" in r.output, r.output[-3000:]
            ghosts = next(l for l in r.output.splitlines() if l.startswith("Nghost:")).split()
            assert float(ghosts[ghosts.index("min") - 1]) > 0  # the empty rank does hold ghosts
        ends[np_] = read_dump(run_lmp.dir / f"traj{np_}.dump")
    start, one, two = ends[1][0], ends[1][steps], ends[2][steps]
    assert np.abs(one[:, 4:7] - start[:, 4:7]).max() > 1e-2  # the model acts on the velocities
    assert np.abs(one[:, 1:7] - two[:, 1:7]).max() < 1e-9


def test_a_restart_written_on_2_ranks_continues_on_1_as_if_the_run_had_not_stopped(run_lmp):
    """write_restart after 5 strides on 2 ranks, read_restart on 1 rank and 5 more: the learned map ends where
    10 uninterrupted strides on 1 rank do, to the solver tolerance (the fix keeps no state; the continued
    run starts its solves afresh)."""
    message_passing_model(run_lmp.dir / "mp.pt")
    argon_data(run_lmp.dir / "ar.data", n=4)
    dump = """dump d all custom 5 {name}.dump id x y z vx vy vz
dump_modify d sort id format float %.17g"""
    common = dict(extra_fix="tol 1e-12", pair=f"pair_style zero {CUTOFF}\npair_coeff * *",
                  comm="comm_modify cutoff 16.0")
    r = run_lmp(lj_script("mp.pt", steps=10, post=dump.format(name="straight"), **common))
    assert r.returncode == 0, r.output[-3000:]
    r = run_lmp(lj_script("mp.pt", steps=5, procs="processors 2 1 1", **common) + "write_restart half.restart\n",
                np=2)
    assert r.returncode == 0, r.output[-3000:]
    script = lj_script("mp.pt", steps=5, post=dump.format(name="continued"), **common)
    r = run_lmp(script.replace("read_data ar.data", "read_restart half.restart"))
    assert r.returncode == 0, r.output[-3000:]
    straight, continued = read_dump(run_lmp.dir / "straight.dump"), read_dump(run_lmp.dir / "continued.dump")
    assert sorted(continued) == [5, 10]
    assert np.abs(continued[10][:, 1:7] - straight[10][:, 1:7]).max() < 1e-9
    assert np.abs(straight[10][:, 4:7] - straight[0][:, 4:7]).max() > 1e-2  # the model acts on the velocities
