"""Training end to end on small in-process reference data: the losses fall, checkpoints resume, the
exported model runs in the ASE integrator."""
import copy

import numpy as np
import pytest
import torch
from ase import units
from ase.md.verlet import VelocityVerlet

from actionmd.ase import ActionVerlet
from actionmd.model_file import export_model, load_model
from actionmd.models import build_learned_model, scales_from_frames
from actionmd.reference import PotentialCalculator, lennard_jones
from actionmd.solver import SolverOptions
from actionmd.training import Frame, Trainer, TrainingOptions, split_by_trajectory
from actionmd.training.trainer import TrainingDiverged
from actionmd.training.rollout import rollout_check
from actionmd.units import momenta_ase_to_model

from ref_systems import NE_XE, export, ne_xe_crystal

STRIDE, DT, CUTOFF = 8.0, 2.0, 6.0


def reference_trajectories(model_dir, count=4, frames=6):
    """Velocity Verlet at 2 fs on the reference potential; pairs 8 fs apart (model units)."""
    calculator = PotentialCalculator(export(lennard_jones(**NE_XE, cutoff=8.0, stride=DT), model_dir / "ref2.pt"))
    trajectories = []
    for seed in range(count):
        atoms = ne_xe_crystal(repeat=2, temperature_K=60, seed=seed)
        atoms.calc = calculator
        dyn = VelocityVerlet(atoms, DT * units.fs)
        states = []
        for _ in range(frames + 1):
            states.append((atoms.positions.copy(), momenta_ase_to_model(atoms.get_momenta()),
                           atoms.get_forces().copy()))
            dyn.run(int(STRIDE / DT))
        trajectories.append([Frame(atoms.numbers.copy(), a[0], a[1], b[0], b[1], atoms.cell.array.copy(),
                                   atoms.pbc.copy(), forces=a[2]) for a, b in zip(states[:-1], states[1:])])
    return trajectories


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return reference_trajectories(tmp_path_factory.mktemp("ref"))


def reference_energy(model_dir):
    """Potential energies of rollout frames under the reference LJ potential (eV)."""
    from actionmd.evaluation.energy import calculator_energies
    calculator = PotentialCalculator(export(lennard_jones(**NE_XE, cutoff=8.0, stride=DT), model_dir / "ref-e.pt"))
    return lambda trajectory: calculator_energies(trajectory, calculator, progress=False)


def new_trainer(data, directory, epochs, pretrain=1, energy=None, learning_rate=3e-3):
    scales = scales_from_frames([f for trajectory in data for f in trajectory], STRIDE)
    module, meta = build_learned_model(["Ne", "Xe"], stride=STRIDE, cutoff=CUTOFF, features=16, layers=1,
                                       dtype="float32", **scales)
    training, validation = split_by_trajectory(data, 0.25, seed=0)
    options = TrainingOptions(epochs=epochs, pretrain_epochs=pretrain, batch_frames=1, learning_rate=learning_rate,
                              rollout_steps=20, progress=False)
    return Trainer(module, meta, training, validation, directory, options, reference_energy=energy), meta


def test_training_lowers_the_losses_and_exports(data, tmp_path):
    """Losses are fractions of the free-flight baseline (1.0 = no better than free flight)."""
    trainer, meta = new_trainer(data, tmp_path / "run", epochs=15, energy=reference_energy(tmp_path))
    history = trainer.fit()
    rows = [r for r in history.rows if r["phase"] == "action"]
    assert rows[0]["val_action"] > 0.5 and rows[0]["val_predictor"] > 0.5  # untrained: near the baseline
    assert history.best_validation < 0.1 + 0.5
    assert min(r["val_action"] for r in rows) < 0.1
    assert min(r["val_predictor"] for r in rows) < 0.5
    rollout = trainer.summary["rollout"]  # the real solver on a validation start, 20 strides
    assert rollout["failed_at"] is None and rollout["steps"] == 20 and rollout["max_residual"] <= 1e-5
    assert set(rollout["mean_temperature_K"]) == {"Ne", "Xe"}
    # E = V_ref + kinetic along the rollout, under the reference potential: held to a fraction of the
    # ~8 meV/atom kinetic energy (wrong momentum units or frames would swing it by meV)
    assert rollout["energy"]["max_deviation_meV_per_atom"] < 0.5
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == len(history.rows) + 1
    export_model(trainer.best_model().cpu(), tmp_path / "learned.pt", meta)
    atoms = ne_xe_crystal(repeat=2, temperature_K=60, seed=9)
    dyn = ActionVerlet(atoms, str(tmp_path / "learned.pt"))
    dyn.run(5)
    assert dyn.solver_summary()["max_residual"] <= 1e-5


def test_validation_gives_the_training_losses_without_their_weight_graph(data, tmp_path):
    """Validation needs dS/dq and dS/dp, not their derivatives by the weights: the same loss values, and no
    graph kept behind them (a double-backward graph per batch cost ~9x the time of the pass itself)."""
    trainer, _ = new_trainer(data, tmp_path / "run", epochs=1)
    batch = trainer.validation[0]
    for phase in ("pretrain", "action"):
        trainer.objective.phase = phase
        trainer.model.train()
        training = trainer.objective(batch)
        trainer.model.eval()
        validation = trainer.objective(batch)
        assert training.requires_grad and not validation.requires_grad
        assert torch.allclose(training.detach(), validation, rtol=1e-6, atol=0)


def test_the_rollout_runs_in_the_dtype_and_with_the_solver_it_is_given(data):
    """A float32 model cannot solve to 1e-11 Å; the same weights in float64 can: the rollout check must
    use the dtype and solver options it is given (a stiff water model stalls otherwise)."""
    module, meta = build_learned_model(["Ne", "Xe"], stride=STRIDE, cutoff=CUTOFF, features=8, layers=1,
                                       predictor=False, dtype="float32")
    tight = SolverOptions(tol=1e-11, maxiter=5, newton_fallback=False)
    as_trained = rollout_check(copy.deepcopy(module), meta, data[0][0], steps=3, solver=tight)
    assert as_trained["dtype"] == "float32" and as_trained["failed_at"] == 0
    as_exported = rollout_check(copy.deepcopy(module), meta, data[0][0], steps=3, dtype="float64", solver=tight)
    assert as_exported["dtype"] == "float64" and as_exported["failed_at"] is None
    assert as_exported["max_residual"] <= 1e-11 and as_exported["solver"]["tol"] == 1e-11


def test_training_resumes_from_its_checkpoint(data, tmp_path):
    first, _ = new_trainer(data, tmp_path / "run", epochs=3)
    first.fit()
    resumed, _ = new_trainer(data, tmp_path / "run", epochs=5)
    assert resumed.history.epoch == 4  # 1 pretraining + 3 action epochs already done
    history = resumed.fit()
    assert history.epoch == 6 and [r["epoch"] for r in history.rows] == [1, 2, 3, 4, 5, 6]


def test_checkpoint_of_another_model_is_refused(data, tmp_path):
    new_trainer(data, tmp_path / "run", epochs=1, pretrain=0)[0].fit()
    module, meta = build_learned_model(["Ne", "Xe"], stride=STRIDE, cutoff=5.0, features=16, layers=1)
    training, validation = split_by_trajectory(data, 0.25, seed=0)
    with pytest.raises(ValueError, match=r"belongs to a different model \(cutoff: 6.0 -> 5.0; .*energy_scale.*"
                                         "the scales come from the training frames"):
        Trainer(module, meta, training, validation, tmp_path / "run", TrainingOptions(progress=False))


def test_checkpoint_resumes_however_the_config_and_data_paths_were_typed(data, tmp_path):
    """The 'training' record (config path as typed, data paths, description) does not change the model."""
    first, meta = new_trainer(data, tmp_path / "run", epochs=1, pretrain=0)
    first.metadata["training"] = {"config": "./t3/train.yaml", "data": ["../lj.h5"], "description": "a"}
    first.fit()
    again, _ = new_trainer(data, tmp_path / "run", epochs=1, pretrain=0)
    again.metadata["training"] = {"config": "/abs/t3/train.yaml", "data": ["/abs/lj.h5"], "description": "b"}
    again._resume()
    assert again.history.epoch == 1


def test_a_diverging_run_stops_at_once_and_keeps_its_last_good_checkpoint(data, tmp_path, capsys):
    """A NaN loss used to train on to the end and then fail for want of best_weights.pt; a lower
    learning_rate then goes on from the last good epoch."""
    new_trainer(data, tmp_path / "run", epochs=1)[0].fit()
    lines = capsys.readouterr().out.splitlines()  # one line per epoch, without progress bars
    assert lines[0].startswith("epoch 1/2 pretrain: force loss train ") and "validation" in lines[0]
    assert lines[1].startswith("epoch 2/2 action: train ") and "best " in lines[1] and "at epoch 2" in lines[1]
    diverging, _ = new_trainer(data, tmp_path / "run", epochs=4, learning_rate=1e6)
    with pytest.raises(TrainingDiverged, match=r"epoch 3: the loss is not finite .*the checkpoint of epoch 2 is "
                                               r"kept in .*run\. Lower training.learning_rate \(now 1e\+06\)"):
        diverging.fit()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["history"]["epoch"] == 2
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 1 + 2
    calmer, _ = new_trainer(data, tmp_path / "run", epochs=2, learning_rate=1e-3)
    assert calmer.optimizer.param_groups[0]["lr"] == 1e-3  # the new rate, not the checkpoint's
    history = calmer.fit()
    assert history.epoch == 3 and all(np.isfinite(r["val_action"]) for r in history.rows)


def test_an_output_folder_that_is_not_a_run_is_refused(data, tmp_path):
    """A model.pt and a foreign log.csv without a checkpoint: refused, not overwritten or appended to."""
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"someone's model")
    (folder / "log.csv").write_text("epoch,notes\n")
    with pytest.raises(ValueError, match="already holds model.pt, log.csv but no checkpoint.pt"):
        new_trainer(data, folder, epochs=1)
    assert (folder / "model.pt").read_bytes() == b"someone's model"
    assert (folder / "log.csv").read_text() == "epoch,notes\n"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        new_trainer(data, tmp_path / "file", epochs=1)


def test_training_options_name_the_bad_key():
    """YAML 1.1 reads 1e-3 as a string: numeric strings are numbers; anything else names key and value."""
    options = TrainingOptions(learning_rate="1e-3", rollout_solver={"tol": "1e-6"})
    assert options.learning_rate == 1e-3 and options.rollout_solver["tol"] == 1e-6
    for bad, message in [({"epochs": "many"}, "epochs must be a whole number >= 1, got 'many'"),
                         ({"epochs": 2.5}, "epochs must be a whole number >= 1, got 2.5"),
                         ({"learning_rate": -1}, "learning_rate must be a number > 0, got -1"),
                         ({"learning_rate": "fast"}, "learning_rate must be a number > 0, got 'fast'"),
                         ({"device": "gpu"}, r"device must be one of \['cpu', 'cuda'\], got 'gpu'"),
                         ({"freeze_action": "yes please"}, "freeze_action must be true or false"),
                         ({"rollout_solver": {"maxiter": "lots"}}, "rollout_solver.maxiter must be a whole number"),
                         ({"rollout_solver": {"tol": "tight"}}, "rollout_solver.tol must be a number, got 'tight'")]:
        with pytest.raises(ValueError, match=message):
            TrainingOptions(**bad)


def test_bad_training_inputs(data, tmp_path):
    with pytest.raises(ValueError, match="at least 2 trajectories"):
        split_by_trajectory(data[:1], 0.2, seed=0)
    for fraction in (0.0, 1.0, 1.5):  # used to be clamped silently
        with pytest.raises(ValueError, match=r"validation_fraction must be a number in \(0, 1\)"):
            split_by_trajectory(data, fraction, seed=0)
    module, meta = build_learned_model(["Ne", "Xe"], stride=STRIDE, cutoff=CUTOFF)
    with pytest.raises(ValueError, match="empty dataset"):
        Trainer(module, meta, [], data[0], tmp_path, TrainingOptions())


def _quick_trainer(data, directory, epochs):
    """new_trainer without the closing rollout and the force pretraining (a resume test needs neither);
    lr_patience 0, so that the scheduler's state takes part."""
    torch.manual_seed(0)
    scales = scales_from_frames([f for trajectory in data for f in trajectory], STRIDE)
    module, meta = build_learned_model(["Ne", "Xe"], stride=STRIDE, cutoff=CUTOFF, features=16, layers=1,
                                       dtype="float32", **scales)
    training, validation = split_by_trajectory(data, 0.25, seed=0)
    options = TrainingOptions(epochs=epochs, pretrain_epochs=0, batch_frames=1, learning_rate=3e-3,
                              lr_patience=0, rollout_steps=0, progress=False)
    return Trainer(module, meta, training, validation, directory, options)


def _flat_state(value, prefix=""):
    """Every tensor and number of a (nested) state dict, by path."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flat_state(item, f"{prefix}/{key}"))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for k, item in enumerate(value):
            out.update(_flat_state(item, f"{prefix}/{k}"))
        return out
    return {prefix: value}


def test_a_resumed_run_continues_exactly_where_it_stopped(data, tmp_path):
    """3 epochs straight and 1 epoch + a resume to 3: the same weights, optimizer and scheduler states, and
    the same logged losses, bit for bit (weights, Adam moments and the plateau counter all come back)."""
    data = [trajectory[:2] for trajectory in data[:2]]  # one trajectory a side, 2 frames each: ~4x faster
    straight = _quick_trainer(data, tmp_path / "straight", epochs=3)
    straight.fit()
    _quick_trainer(data, tmp_path / "resumed", epochs=1).fit()
    resumed = _quick_trainer(data, tmp_path / "resumed", epochs=3)
    assert resumed.history.epoch == 1
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("optimizer", "scheduler"):
        sa = _flat_state(getattr(straight, name).state_dict())
        sb = _flat_state(getattr(resumed, name).state_dict())
        assert sa.keys() == sb.keys(), name
        for key in sa:
            if isinstance(sa[key], torch.Tensor):
                assert torch.equal(sa[key], sb[key]), f"{name}{key}"
            else:
                assert sa[key] == sb[key], f"{name}{key}"
    for column in ("epoch", "val_action", "val_predictor", "train_action", "lr"):
        assert [r[column] for r in straight.history.rows] == [r[column] for r in resumed.history.rows], column
    assert straight.history.best_validation == resumed.history.best_validation


def test_split_by_trajectory_puts_every_frame_on_exactly_one_side():
    trajectories = [[object() for _ in range(5)] for _ in range(7)]
    training, validation = split_by_trajectory(trajectories, 0.3, seed=4)
    ids_train, ids_val = {id(f) for f in training}, {id(f) for f in validation}
    assert len(ids_train) == len(training) and len(ids_val) == len(validation)
    assert not ids_train & ids_val
    assert ids_train | ids_val == {id(f) for t in trajectories for f in t}
    assert len(validation) == 2 * 5  # round(0.3 * 7) whole trajectories
    for trajectory in trajectories:  # a trajectory is never split
        assert {id(f) in ids_val for f in trajectory} in ({True}, {False})


def test_action_and_predictor_each_keep_the_weights_of_their_own_best_epoch(data, tmp_path):
    """One score for both once chose the epoch the predictor liked, with a worse action; and a flat action
    loss never stopped training while the predictor crept down."""
    trainer, _ = new_trainer(data, tmp_path / "run", epochs=5, pretrain=0)

    def epoch(fill, action, predictor):
        with torch.no_grad():
            for value in trainer.model.parameters():
                value.fill_(fill)
        trainer.history.epoch += 1
        return trainer._keep_best(np.array([action, predictor]))

    assert epoch(1.0, 0.5, 0.5)
    assert epoch(2.0, 0.4, 0.6)          # the action improves, the predictor does not
    assert epoch(3.0, 0.45, 0.3)         # the predictor improves, the action does not
    assert not epoch(4.0, 0.41, 0.31)    # neither: nothing to save
    history, best = trainer.history, trainer.best_state
    assert (history.best_action_epoch, history.best_predictor_epoch, history.best_epoch) == (2, 3, 2)
    assert history.stale_epochs == 2     # epochs since the action (the network being trained) improved
    assert history.best_validation == pytest.approx(0.4 + 0.3)
    assert all((v == 2.0).all() for k, v in best.items() if k.startswith("action.") and v.is_floating_point()
               and "masses" not in k and "frequencies" not in k)
    assert all((v == 3.0).all() for k, v in best.items() if k.startswith("predictor.") and v.is_floating_point()
               and "masses" not in k and "frequencies" not in k)


def test_a_flat_action_loss_stops_training_while_a_frozen_action_run_follows_its_predictor(data, tmp_path):
    trainer, _ = new_trainer(data, tmp_path / "frozen", epochs=5, pretrain=0)
    trainer.options.freeze_action = True
    for action, predictor in ((0.5, 0.5), (0.5, 0.4), (0.5, 0.3)):
        trainer.history.epoch += 1
        trainer._keep_best(np.array([action, predictor]))
    assert trainer.history.stale_epochs == 0 and trainer.history.best_epoch == 3
