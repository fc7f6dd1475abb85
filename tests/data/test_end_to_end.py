"""The whole learning pipeline in seconds: LAMMPS reference data -> `actionmd train` -> `actionmd export`
-> the ASE integrator runs the learned model."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms

from actionmd.ase import ActionVerlet
from actionmd.data import load_dataset
from actionmd.model_file import load_model
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
    exported = tmp_path / "model64.pt"
    subprocess.run([sys.executable, "-m", "actionmd.cli", "export", str(tmp_path / "run"), "-o", str(exported),
                    "--dtype", "float64"], check=True, capture_output=True)
    assert load_model(exported, device="cpu").metadata.dtype == "float64"
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
