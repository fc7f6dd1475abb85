"""The model-file contract: round trip, `actionmd info`, and every rejection with its message."""
import json
import subprocess
import sys

import pytest
import torch

from actionmd.model_file import ModelFileError, export_model, load_model, read_metadata
from actionmd.reference import lennard_jones

from ref_systems import NE_XE


def reference():
    return lennard_jones(**NE_XE, cutoff=8.0, stride=8.0)


def save_raw(module, path, metadata):
    """Write a TorchScript archive with arbitrary (possibly invalid) metadata, bypassing the exporter."""
    extra = {} if metadata is None else {"actionmd.json": metadata if isinstance(metadata, str) else json.dumps(metadata)}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


def test_round_trip_keeps_metadata_and_extra_keys(tmp_path):
    module, meta = reference()
    meta["training"] = {"epochs": 3}
    export_model(module, tmp_path / "m.pt", meta)
    loaded = load_model(tmp_path / "m.pt", device="cpu")
    assert loaded.metadata.species == (10, 54)
    assert loaded.metadata.stride == 8.0 and loaded.metadata.cutoff == 8.0
    assert loaded.metadata.extra["training"] == {"epochs": 3}
    assert loaded.dtype == torch.float64


def test_info_command_prints_metadata(lj_mixture_model):
    out = subprocess.run([sys.executable, "-m", "actionmd.cli", "info", lj_mixture_model],
                         capture_output=True, text=True, check=True).stdout
    assert "Ne Xe" in out and "8 fs" in out and "float64" in out
    raw = subprocess.run([sys.executable, "-m", "actionmd.cli", "info", "--json", lj_mixture_model],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(raw)["format"] == "actionmd"


def test_info_command_reports_a_bad_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a model")
    result = subprocess.run([sys.executable, "-m", "actionmd.cli", "info", str(tmp_path / "x.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "not a TorchScript archive" in result.stderr


def test_file_that_is_not_torchscript(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="not a TorchScript archive"):
        load_model(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "pickle.pt")  # a zip, but no actionmd metadata
    with pytest.raises(ModelFileError, match="without actionmd metadata"):
        load_model(tmp_path / "pickle.pt")


def test_export_replaces_only_a_model_file_and_makes_its_folder(tmp_path):
    module, meta = reference()
    data = tmp_path / "data.h5"
    data.write_bytes(b"\x89HDF\r\n\x1a\n precious reference data")
    with pytest.raises(ModelFileError, match="exists and is not an actionmd model file, so it is not overwritten"):
        export_model(module, data, meta)
    assert data.read_bytes().endswith(b"precious reference data")
    with pytest.raises(ModelFileError, match="is a folder; give the model file's name"):
        export_model(module, tmp_path, meta)
    export_model(module, tmp_path / "new" / "deeper" / "m.pt", meta)
    export_model(module, tmp_path / "new" / "deeper" / "m.pt", meta)  # a model file may be replaced
    assert load_model(tmp_path / "new" / "deeper" / "m.pt", device="cpu").metadata.stride == 8.0


def test_a_run_folder_or_a_checkpoint_given_as_a_model_points_at_export(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ModelFileError, match=r"a training checkpoint, not a model: export the run"):
        load_model(tmp_path / "checkpoint.pt")
    with pytest.raises(ModelFileError, match=r"a training run folder: export it with `actionmd export"):
        load_model(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.pt")


def test_torchscript_without_metadata(tmp_path):
    with pytest.raises(ModelFileError, match=r"without actionmd metadata \(actionmd.json\)"):
        load_model(save_raw(reference()[0], tmp_path / "m.pt", None))


def test_metadata_that_is_not_json(tmp_path):
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(save_raw(reference()[0], tmp_path / "m.pt", "{species: oops"))


def full_metadata(**changes):
    meta = {"format": "actionmd", "format_version": 1, **reference()[1]}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


@pytest.mark.parametrize("changes, message", [
    (dict(format_version=2), r"format_version 2 is newer than this actionmd understands \(1\); upgrade"),
    (dict(format="flashmd"), r"'format' is 'flashmd', expected 'actionmd'"),
    (dict(stride=None), r"missing metadata key\(s\) \['stride'\]"),
    (dict(cutoff="8"), r"'cutoff' must be the edge cutoff in Å, got '8'"),
    (dict(has_predictor=1), r"'has_predictor' must be true or false, got 1"),
    (dict(stride=True), r"'stride' must be the stride in fs, got True"),
    (dict(stride=-1.0), r"'stride' must be a finite positive number"),
    (dict(dtype="float16"), r"'dtype' must be one of \['float32', 'float64'\]"),
    (dict(species=[10, 10]), r"lists an element twice"),
    (dict(species=[10, 200]), r"atomic numbers 1..118"),
    (dict(masses=[20.18]), r"one positive mass \(u\) per species \(2\)"),
    (dict(masses=[20.18, -131.29]), r"one positive mass \(u\) per species \(2\)"),
    (dict(cutoff=-1.0), r"'cutoff' must be a finite non-negative number, got -1.0"),
    (dict(interaction_range=-1.0), r"'interaction_range' must be a finite non-negative number, got -1.0"),
    (dict(training_range={"closest_pair": {"Ne-Xe": 3.0}}), r"'training_range' must be \{\"closest_pair\": "
                                                            r"\{\"Z1-Z2\": distance in Å > 0"),
    (dict(training_range={"closest_pair": {"10-10": 0}}), r"'training_range' must be .*got \{'closest_pair': "
                                                          r"\{'10-10': 0\}\}"),
    (dict(translation_invariant="yes"), r"'translation_invariant' must be true or false, got 'yes'"),
    (dict(training_range={"closest_pair": {"10-10": 2.4, "10-29": 2.5}}),
     r"'training_range' names species pairs \['10-29'\] that the model \(atomic numbers \[10, 54\]\) does not have"),
])
def test_bad_metadata_is_rejected_on_load(tmp_path, changes, message):
    with pytest.raises(ModelFileError, match=message):
        load_model(save_raw(reference()[0], tmp_path / "m.pt", full_metadata(**changes)))
    with pytest.raises(ModelFileError, match=message):
        read_metadata(tmp_path / "m.pt")


def test_exporter_rejects_bad_metadata(tmp_path):
    module, meta = reference()
    with pytest.raises(ModelFileError, match="'interaction_range'"):
        export_model(module, tmp_path / "m.pt", {k: v for k, v in meta.items() if k != "interaction_range"})
    assert not (tmp_path / "m.pt").exists()


class WrongSignature(torch.nn.Module):
    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return positions.sum(1)


class WrongReturn(torch.nn.Module):
    def forward(self, positions: torch.Tensor, momenta: torch.Tensor, types: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor) -> float:
        return 0.0


def test_module_whose_forward_does_not_match(tmp_path):
    meta = reference()[1]
    with pytest.raises(ModelFileError, match=r"forward\(\) must take five tensors"):
        export_model(WrongSignature(), tmp_path / "a.pt", meta)
    with pytest.raises(ModelFileError, match=r"forward\(\) must return Tensor, found float"):
        export_model(WrongReturn(), tmp_path / "b.pt", meta)
    with pytest.raises(ModelFileError, match=r"forward\(\) must take five tensors"):
        load_model(save_raw(WrongSignature(), tmp_path / "c.pt", full_metadata()))


def test_metadata_must_agree_with_the_module(tmp_path):
    module, meta = reference()
    with pytest.raises(ModelFileError, match=r"has_predictor=True but the module has no exported predict"):
        export_model(module, tmp_path / "a.pt", {**meta, "has_predictor": True})
    with pytest.raises(ModelFileError, match=r"dtype is float32 but the module holds \['torch.float64'\]"):
        export_model(module, tmp_path / "b.pt", {**meta, "dtype": "float32"})
