"""Files from others are data (docs/trust.md): a data file's LAMMPS lines are shown, not run, unless they are
a built-in system's or the user says so; the same trajectory under two names cannot leak into validation."""
import json
import shutil

import h5py
import pytest
import yaml

from actionmd.training.config import TrainConfigError, _reference_energy, read_config, train_from_config


def _config(directory, data_files, **changes):
    config = {"data": [str(f) for f in data_files], "stride": 4.0, "every": 4, "validation_fraction": 0.25,
              "model": {"cutoff": 5.0, "features": 8, "layers": 1, "dtype": "float32"},
              "training": {"epochs": 1, "batch_frames": 4, "rollout_steps": 3}, "output": "run", **changes}
    path = directory / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _with_shell_line(lj_file, tmp_path, marker):
    """A copy of the data file whose stored potential lines end with `shell touch MARKER`."""
    copy = tmp_path / "evil.h5"
    shutil.copy(lj_file, copy)
    with h5py.File(copy, "r+") as f:
        cfg = json.loads(f.attrs["config_json"])
        cfg["potential"] = cfg["potential"] + [f"shell touch {marker}"]
        f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
    return copy


def test_training_never_runs_a_data_files_shell_line(lj_file, tmp_path, capsys):
    marker = tmp_path / "created-by-the-data-file"
    evil = _with_shell_line(lj_file, tmp_path, marker)
    train_from_config(_config(tmp_path, [evil]), progress=False)
    assert not marker.exists()
    energy = json.loads((tmp_path / "run" / "summary.json").read_text())["rollout"]["energy"]
    assert "lines from a data file can run shell commands, so they are shown, not run" in energy["not_evaluated"]
    assert f"shell touch {marker}" in energy["not_evaluated"]
    assert "reference_energy: {system: YOUR_CONFIG}" in capsys.readouterr().out


def test_only_the_named_risk_runs_a_data_files_lines(lj_file, tmp_path):
    marker = tmp_path / "created-by-the-data-file"
    evil = _with_shell_line(lj_file, tmp_path, marker)
    config = read_config(_config(tmp_path, [evil], reference_energy={"run_data_file_commands": True}))
    energy, why = _reference_energy(config["data"], config["reference_energy"])
    assert why is None and energy is not None


def test_a_built_in_systems_lines_and_the_users_own_system_re_evaluate(lj_file, tmp_path):
    energy, why = _reference_energy([str(lj_file)])
    assert energy is not None and why is None  # lj-mixture's own lines: the package's, trusted
    evil = _with_shell_line(lj_file, tmp_path, tmp_path / "marker")
    config = read_config(_config(tmp_path, [evil], reference_energy={"system": "lj-mixture"}))
    energy, why = _reference_energy(config["data"], config["reference_energy"])
    assert energy is not None and why is None


@pytest.mark.parametrize("setting, message", [
    ({"run_data_file_commands": "yes"}, "reference_energy.run_data_file_commands must be true or false"),
    ({"system": "lj-mixture", "run_data_file_commands": True}, "reference_energy takes one of"),
    ({"trust": True}, "reference_energy takes one of"),
    ({"system": "no-such-system.yaml"}, r"reference_energy.system .*no-such-system.yaml.* neither a config file")])
def test_bad_reference_energy_settings_are_refused(lj_file, tmp_path, setting, message):
    with pytest.raises(TrainConfigError, match=message):
        read_config(_config(tmp_path, [lj_file], reference_energy=setting))


class _RunsAShellCommand:
    """A pickled object whose loading runs a shell command (what torch.load(weights_only=False) would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained_run(lj_file, tmp_path_factory):
    """A one-epoch run folder (no rollout), shared by the run-folder tests, which copy it before changing it."""
    directory = tmp_path_factory.mktemp("trained")
    train_from_config(_config(directory, [lj_file], training={"epochs": 1, "batch_frames": 4, "rollout_steps": 0}),
                      progress=False)
    return directory / "run"


def test_a_checkpoint_holds_only_tensors_and_plain_containers(trained_run):
    import torch
    state = torch.load(trained_run / "checkpoint.pt", weights_only=True)  # no allowed extras needed
    assert state["history"]["epoch"] == 1 and type(state["history"]["rows"][0]["val_action"]) is float


@pytest.mark.parametrize("use", ["export", "start_from", "resume"])
def test_a_run_folder_with_a_pickled_object_is_refused_and_runs_nothing(lj_file, trained_run, tmp_path, use):
    import torch
    from actionmd.training.config import export_from_run
    from actionmd.training.run_files import RunFileError
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "created-by-the-checkpoint"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["metadata"]["payload"] = _RunsAShellCommand(marker)
    torch.save(state, run / "checkpoint.pt")
    with pytest.raises(RunFileError, match=r"checkpoint.pt: holds objects other than tensors and plain containers "
                                           r"\(.*os.*system.*\), which are not loaded since loading them could run"):
        if use == "export":
            export_from_run(run, tmp_path / "model.pt")
        else:
            second = tmp_path / "second"
            second.mkdir()
            changes = {"start_from": "../run"} if use == "start_from" else {"output": "../run"}
            train_from_config(_config(second, [lj_file], **changes), progress=False)
    assert not marker.exists()


def test_a_truncated_checkpoint_gets_one_line_naming_the_file_and_the_fix(lj_file, trained_run, tmp_path):
    import subprocess
    import sys
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    whole = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    result = subprocess.run([sys.executable, "-m", "actionmd.cli", "export", str(run), "-o", str(tmp_path / "m.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "checkpoint.pt: damaged or truncated, not a readable torch file" in result.stderr
    assert "restore it from a copy, or delete the run folder" in result.stderr


def test_an_older_checkpoint_with_numpy_numbers_in_its_log_still_loads(tmp_path):
    import numpy as np
    import torch
    from actionmd.training.run_files import load_run_file
    torch.save({"history": {"rows": [{"val_action": np.float64(0.5), "epoch": np.int64(1)}]}}, tmp_path / "c.pt")
    assert load_run_file(tmp_path / "c.pt")["history"]["rows"][0]["val_action"] == 0.5


def test_the_same_trajectory_under_two_file_names_is_refused(lj_file, tmp_path):
    from actionmd.data import DatasetError, load_dataset
    twin = tmp_path / "renamed.h5"
    shutil.copy(lj_file, twin)
    with pytest.raises(DatasetError, match=r"renamed.h5:condition_000/segment_0000 holds the same positions and "
                                           r"momenta as .*lj.h5:condition_000/segment_0000: the same trajectory twice"):
        load_dataset([lj_file, twin])
    with pytest.raises(DatasetError, match="the same trajectory twice"):
        train_from_config(_config(tmp_path, [lj_file, twin]), progress=False)
    with h5py.File(twin, "r+") as f:  # one segment of the copy changed: the others are still twins
        f["condition_000/segment_0000/positions"][0, 0, 0] += 1e-9
    with pytest.raises(DatasetError, match=r"renamed.h5:condition_000/segment_0001 holds the same"):
        load_dataset([lj_file, twin])
