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
