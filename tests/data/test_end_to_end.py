"""The whole learning pipeline in seconds: LAMMPS reference data -> `actionmd train` -> `actionmd export`
-> the ASE integrator runs the learned model."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms

from actionmd.ase import ActionVerlet
from actionmd.data import load_dataset
from actionmd.model_file import load_model
from actionmd.training import TrainingOptions
from actionmd.training.config import TrainConfigError, read_config, train_from_config
from actionmd.units import momenta_model_to_ase


def write_config(directory, data_file, **changes):
    config = {"data": [str(data_file)], "stride": 4.0, "every": 2, "validation_fraction": 0.25,
              "model": {"cutoff": 5.0, "features": 16, "layers": 1, "dtype": "float32"},
              "training": {"epochs": 8, "pretrain_epochs": 1, "batch_frames": 1, "learning_rate": 3e-3},
              "output": "run", **changes}
    path = directory / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_generate_train_export_run(lj_file, tmp_path):
    model_path = train_from_config(write_config(tmp_path, lj_file), progress=False)
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in log[1:]]
    action_rows = [r for r in rows if r["phase"] == "action"]
    assert float(action_rows[-1]["val_action"]) < 0.5 * float(action_rows[0]["val_action"])
    # the closing rollout's energy comes from LAMMPS with the data's own pair_style: this tiny model is
    # allowed a poor drift, but not a swing beyond the ~15 meV/atom kinetic energy (a units error would be)
    energy = json.loads((tmp_path / "run" / "summary.json").read_text())["rollout"]["energy"]
    assert np.isfinite(energy["drift_meV_per_atom_ps"]) and 0 < energy["max_deviation_meV_per_atom"] < 15
    meta = load_model(model_path, device="cpu").metadata
    assert meta.stride == 4.0 and meta.species == (10, 54) and meta.extra["training"]["best_epoch"] >= 1
    # where the model may be trusted: the closest pair of each species pair in its data
    from actionmd.extrapolation import closest_pairs
    assert meta.extra["training_range"]["closest_pair"] == closest_pairs(load_dataset(lj_file).segments, meta.cutoff)
    assert set(meta.extra["training_range"]["closest_pair"]) == {"10-10", "10-54", "54-54"}
    exported = tmp_path / "model64.pt"
    subprocess.run([sys.executable, "-m", "actionmd.cli", "export", str(tmp_path / "run"), "-o", str(exported),
                    "--dtype", "float64"], check=True, capture_output=True)
    exported_meta = load_model(exported, device="cpu").metadata
    assert exported_meta.dtype == "float64"
    # the run's record travels with an export as with train's own model.pt
    assert {k: exported_meta.extra["training"][k] for k in ("epochs", "best_epoch", "best_validation")} == \
        {k: meta.extra["training"][k] for k in ("epochs", "best_epoch", "best_validation")}
    segment = load_dataset(lj_file).segments[0]
    atoms = Atoms(numbers=segment.atomic_numbers, positions=segment.positions[0], cell=segment.cell, pbc=True,
                  masses=segment.masses)
    atoms.set_momenta(momenta_model_to_ase(segment.momenta[0]))
    dyn = ActionVerlet(atoms, str(exported))
    dyn.run(5)
    assert dyn.solver_summary()["max_residual"] <= 1e-8 and np.isfinite(atoms.positions).all()


def test_a_new_predictor_trains_beside_a_frozen_action(lj_file, tmp_path):
    """start_from + freeze_action: a run's action is kept bit for bit and a new (angular) predictor learns."""
    import torch
    train_from_config(write_config(tmp_path, lj_file, training={"epochs": 2, "pretrain_epochs": 1,
                                                                "batch_frames": 1, "rollout_steps": 0}),
                      progress=False)
    second = tmp_path / "second"
    second.mkdir()
    config = write_config(second, lj_file, start_from="../run", output="run-predictor",
                          model={"cutoff": 5.0, "features": 16, "layers": 1, "dtype": "float32",
                                 "predictor_angular": True},
                          training={"epochs": 4, "pretrain_epochs": 0, "batch_frames": 1, "learning_rate": 3e-3,
                                    "freeze_action": True, "rollout_steps": 0})
    model_path = train_from_config(config, progress=False)
    start = torch.load(tmp_path / "run" / "best_weights.pt")
    trained = torch.load(second / "run-predictor" / "best_weights.pt")
    action_keys = [k for k in start if k.startswith("action.")]
    assert action_keys and all(torch.equal(start[k], trained[k]) for k in action_keys)
    log = (second / "run-predictor" / "log.csv").read_text().splitlines()
    rows = [dict(zip(log[0].split(","), line.split(","))) for line in log[1:]]
    assert len({r["val_action"] for r in rows}) == 1 and float(rows[0]["val_action"]) > 0  # the action stayed
    assert float(rows[-1]["val_predictor"]) < 0.7 * float(rows[0]["val_predictor"])
    meta = load_model(model_path, device="cpu").metadata
    assert meta.extra["architecture"]["predictor_angular"] and meta.interaction_range == 10.0
    with pytest.raises(TrainConfigError, match="freeze_action needs start_from"):
        read_config(write_config(second, lj_file, training={"freeze_action": True}))
    with pytest.raises(TrainConfigError, match="that run's stride is 4.0 fs, this config's 8.0 fs"):
        train_from_config(write_config(second, lj_file, stride=8.0, start_from="../run"), progress=False)


def test_start_from_a_run_of_other_species_cutoff_or_action_is_refused(lj_file, tmp_path):
    """Its weights and scales would be copied into a model they do not fit (an Ne/Xe run into Cu/Ni gave a
    validation loss 360x that of free flight, silently)."""
    import torch
    train_from_config(write_config(tmp_path, lj_file, training={"epochs": 1, "pretrain_epochs": 0,
                                                                "batch_frames": 2, "rollout_steps": 0}),
                      progress=False)
    second = tmp_path / "second"
    second.mkdir()
    with pytest.raises(TrainConfigError, match=r"that run's cutoff is 5.0 Å, this config's 6.0 Å; set model.cutoff"):
        train_from_config(write_config(second, lj_file, start_from="../run", model={"cutoff": 6.0, "features": 16,
                                                                                    "layers": 1}), progress=False)
    with pytest.raises(TrainConfigError, match=r"its action has another architecture \(architecture.features: "
                                               r"16 -> 8\)"):
        train_from_config(write_config(second, lj_file, start_from="../run", model={"cutoff": 5.0, "features": 8,
                                                                                    "layers": 1}), progress=False)
    other = tmp_path / "cuni-run"  # the same run relabelled as a Cu/Ni one
    other.mkdir()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    state["metadata"]["species"] = [28, 29]
    torch.save(state, other / "checkpoint.pt")
    with pytest.raises(TrainConfigError, match="that run was trained on Ni Cu, this config's data holds Ne Xe"):
        train_from_config(write_config(second, lj_file, start_from="../cuni-run"), progress=False)


def test_a_run_resumes_however_its_config_path_is_typed(lj_file, tmp_path, monkeypatch):
    """./train.yaml, an absolute path, another cwd, a copied run folder: the same run, resumed, not refused as
    'a different model'. The config says learning_rate: 3e-3, a string to YAML 1.1."""
    config = write_config(tmp_path, lj_file, training={"epochs": 1, "pretrain_epochs": 0, "batch_frames": 2,
                                                       "learning_rate": 0.125, "rollout_steps": 0})
    config.write_text(config.read_text().replace("learning_rate: 0.125", "learning_rate: 3e-3"))
    assert "3e-3" in config.read_text()
    train_from_config(config, progress=False)
    monkeypatch.chdir(tmp_path)
    train_from_config("./train.yaml", progress=False)
    train_from_config(tmp_path.resolve() / "train.yaml", progress=False)
    monkeypatch.chdir(tmp_path.parent)
    train_from_config(Path(tmp_path.name) / "train.yaml", progress=False)
    shutil.copytree(tmp_path, tmp_path.parent / f"{tmp_path.name}-copy")
    config = tmp_path.parent / f"{tmp_path.name}-copy" / "train.yaml"
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 2"))
    train_from_config(config, progress=False)
    assert len((config.parent / "run" / "log.csv").read_text().splitlines()) == 1 + 2  # resumed, extended


def test_bad_training_configs(lj_file, tmp_path):
    with pytest.raises(TrainConfigError, match=r"unknown key\(s\) \['epochs'\]"):
        read_config(write_config(tmp_path, lj_file, epochs=3))
    with pytest.raises(TrainConfigError, match=r"unknown training key\(s\) \['lr'\]"):
        read_config(write_config(tmp_path, lj_file, training={"lr": 1e-3}))
    with pytest.raises(TrainConfigError, match="rollout_dtype must be one of"):
        read_config(write_config(tmp_path, lj_file, training={"rollout_dtype": "double"}))
    with pytest.raises(TrainConfigError, match="rollout_solver takes a mapping of"):
        read_config(write_config(tmp_path, lj_file, training={"rollout_solver": {"memory": 30}}))
    with pytest.raises(TrainConfigError, match="rollout_solver: solver tolerance must be a positive length"):
        read_config(write_config(tmp_path, lj_file, training={"rollout_solver": {"tol": -1}}))
    with pytest.raises(ValueError, match="not a whole multiple of the stored frame interval"):
        train_from_config(write_config(tmp_path, lj_file, stride=2.5), progress=False)
    # wrong types and values: one line naming the key, the value and what is expected
    for changes, message in [
            ({"training": {"epochs": "many"}}, "training.epochs must be a whole number >= 1, got 'many'"),
            ({"training": {"device": "gpu"}}, r"training.device must be one of \['cpu', 'cuda'\], got 'gpu'"),
            ({"model": {"cutoff": 5.0, "features": 8.5}}, "model.features must be a whole number >= 1, got 8.5"),
            ({"model": {"cutoff": -1}}, "model.cutoff must be a number > 0, got -1"),
            ({"model": {"cutoff": "six"}}, "model.cutoff must be a number > 0, got 'six'"),
            ({"model": {"cutoff": 5.0, "dtype": "float16"}}, r"model.dtype must be one of \['float32', 'float64'\]"),
            ({"model": "small"}, "model must be a mapping of keys, e.g. model: {...}, got 'small'"),
            ({"stride": "twenty"}, "stride must be a number > 0, got 'twenty'"),
            ({"stride": -20}, "stride must be a number > 0, got -20"),
            ({"every": "x"}, "every must be a whole number >= 1, got 'x'"),
            ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \(0, 1\), got 1.0"),
            ({"validation_fraction": 0}, r"validation_fraction must be a number in \(0, 1\), got 0"),
            ({"data": [str(lj_file), str(lj_file)]}, "data lists the same file twice")]:
        with pytest.raises(TrainConfigError, match=message):
            read_config(write_config(tmp_path, lj_file, **changes))
    if not __import__("torch").cuda.is_available():
        with pytest.raises(TrainConfigError, match="training.device is 'cuda', but torch finds no CUDA device"):
            read_config(write_config(tmp_path, lj_file, training={"device": "cuda"}))
    twice = write_config(tmp_path, lj_file, stride=4.0)
    twice.write_text(twice.read_text() + "stride: 8.0\n")  # an edited config that still holds the old key
    with pytest.raises(TrainConfigError, match=r"key 'stride' is given twice \(first on line \d+\)"):
        read_config(twice)
    numbers = write_config(tmp_path, lj_file, training={"learning_rate": 0.125, "rollout_solver": {"tol": 0.5}})
    numbers.write_text(numbers.read_text().replace("0.125", "1e-3").replace("0.5", "1e-6"))
    options = TrainingOptions(**read_config(numbers)["training"])
    assert options.learning_rate == 1e-3 and options.rollout_solver == {"tol": 1e-6}
    result = subprocess.run([sys.executable, "-m", "actionmd.cli", "export", str(tmp_path / "nothing"), "-o", "x.pt"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no checkpoint.pt" in result.stderr


def test_distributed_training_with_torchrun(lj_file, tmp_path):
    """Two ranks (gloo, CPU) under torchrun: equal training shards, uneven validation, no hang."""
    config = write_config(tmp_path, lj_file, training={"epochs": 2, "pretrain_epochs": 1, "batch_frames": 1,
                                                       "rollout_steps": 3})
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_addr=127.0.0.1", "--master_port=29533",
                             "-m", "actionmd.cli", "train", str(config), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model written to") == 1  # rank 0 alone writes
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 1 + 3
    assert load_model(tmp_path / "run" / "model.pt", device="cpu").metadata.extra["training"]["epochs"] == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_train_stops_with_one_line(lj_file, tmp_path, signum):
    """Ctrl-C printed a KeyboardInterrupt traceback and SIGTERM exited 143 without a word: now one line says
    the checkpoint is kept and how to resume."""
    config = write_config(tmp_path, lj_file, training={"epochs": 1000, "pretrain_epochs": 0, "batch_frames": 1,
                                                       "rollout_steps": 0})
    process = subprocess.Popen([sys.executable, "-m", "actionmd.cli", "train", str(config), "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint, deadline = tmp_path / "run" / "checkpoint.pt", time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    how = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert stderr.startswith(f"actionmd train: {how}; the checkpoint of the last finished epoch is kept in ")
    assert "rerun the same command to resume" in stderr


def test_export_records_the_training_range_of_an_older_model_from_its_data(lj_file, tmp_path):
    """A model exported before the exporter recorded where it may be trusted gains it from --data; data of
    other species is refused."""
    from actionmd.extrapolation import closest_pairs
    from actionmd.model_file import export_model
    from actionmd.models import build_learned_model
    for name, species in (("older.pt", ["Ne", "Xe"]), ("cu.pt", ["Cu"])):
        module, meta = build_learned_model(species, stride=4.0, cutoff=5.0, features=8, layers=1, predictor=False)
        export_model(module, tmp_path / name, meta)
    assert "training_range" not in load_model(tmp_path / "older.pt", device="cpu").metadata.extra
    cli = [sys.executable, "-m", "actionmd.cli", "export"]
    subprocess.run(cli + [str(tmp_path / "older.pt"), "-o", str(tmp_path / "ranged.pt"), "--data", str(lj_file)],
                   check=True, capture_output=True)
    meta = load_model(tmp_path / "ranged.pt", device="cpu").metadata
    assert meta.extra["training_range"]["closest_pair"] == closest_pairs(load_dataset(lj_file).segments, meta.cutoff)
    r = subprocess.run(cli + [str(tmp_path / "cu.pt"), "-o", str(tmp_path / "x.pt"), "--data", str(lj_file)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--data holds species [10, 54], the model [29]" in r.stderr, r.stderr


def test_a_stopped_run_is_finished_with_its_verdict(lj_file, tmp_path):
    """`train --finish` after a stop: no further epochs; the closing rollout, its verdict and model.pt."""
    config = write_config(tmp_path, lj_file, training={"epochs": 1000, "pretrain_epochs": 0, "batch_frames": 1,
                                                       "rollout_steps": 10})
    train = [sys.executable, "-m", "actionmd.cli", "train", str(config), "--no-progress"]
    nothing = subprocess.run(train + ["--finish"], capture_output=True, text=True)
    assert nothing.returncode != 0 and "Traceback" not in nothing.stderr, nothing.stderr[-2000:]
    assert "has no finished epoch past force pretraining to finish from" in nothing.stderr
    process = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint, deadline = tmp_path / "run" / "checkpoint.pt", time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert not (tmp_path / "run" / "model.pt").exists()
    finished = subprocess.run(train + ["--finish"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "model written to" in finished.stdout
    assert "closing rollout: 10 strides of 4 fs (0.04 ps) from a validation state" in finished.stdout
    assert "energy drift under the reference: " in finished.stdout and "meV/atom/ps" in finished.stdout
    assert "equipartition: " in finished.stdout and "action evaluations per stride" in finished.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    log_rows = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()[1:]
    assert summary["epoch"] == len(log_rows) and summary["rollout"]["steps"] == 10
    assert (tmp_path / "run" / "model.pt").exists()
