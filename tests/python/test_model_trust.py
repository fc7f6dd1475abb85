"""A model file is code (docs/trust.md): its graphs may hold tensor maths only; one that reaches files,
processes or foreign operators is refused before anything of it runs."""
import glob
import time
from pathlib import Path
from typing import Tuple

import pytest
import torch

from actionmd.model_file import ModelFileError, export_model, load_model
from actionmd.reference import lennard_jones

from ref_systems import NE_XE

REPOSITORY = Path(__file__).resolve().parents[2]


class WritesAFile(torch.nn.Module):
    """A valid action whose forward() also creates a file (torch.from_file with shared=True)."""

    def __init__(self, inner, path: str):
        super().__init__()
        self.inner, self.path = inner, path

    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        touched = torch.from_file(self.path, shared=True, size=1, dtype=positions.dtype)
        return self.inner(positions, momenta, types, edge_index, edge_shifts) + 0 * touched.sum()


def _touch(path: str, like: torch.Tensor) -> torch.Tensor:
    """A free function: the check must see through calls into it."""
    return torch.from_file(path, shared=True, size=1, dtype=like.dtype)


class WritesAFileThroughAFunction(WritesAFile):
    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        return self.inner(positions, momenta, types, edge_index, edge_shifts) + 0 * _touch(self.path, positions).sum()


class WritesAFileWhileLoading(torch.nn.Module):
    """TorchScript runs __setstate__ inside torch.jit.load, before any check of the loaded module."""

    def __init__(self, inner, path: str):
        super().__init__()
        self.inner, self.path = inner, path

    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        return self.inner(positions, momenta, types, edge_index, edge_shifts)

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path, self.training = state[0], state[1]
        self.training = bool(torch.from_file(self.path, shared=True, size=1).sum() == 0.0) or state[1]


class UsesAProfilerOperator(WritesAFile):
    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        handle = torch.ops.profiler._record_function_enter_new("x", None)
        torch.ops.profiler._record_function_exit(handle)
        return self.inner(positions, momenta, types, edge_index, edge_shifts)


def _export(cls, tmp_path, marker):
    inner, meta = lennard_jones(**NE_XE, cutoff=8.0, stride=8.0)
    path = tmp_path / "model.pt"
    export_model(torch.jit.script(cls(inner, str(marker))), path, meta)
    return path


@pytest.mark.parametrize("cls, message", [
    (WritesAFile, r"forward\(\) uses the operator aten::from_file, which an action model does not need"),
    (WritesAFileThroughAFunction, r"forward\(\) uses the operator aten::from_file"),
    (WritesAFileWhileLoading, r"its code defines __setstate__, which TorchScript would run while loading it"),
    (UsesAProfilerOperator, r"forward\(\) uses the operator profiler::_record_function_enter_new")])
def test_a_model_that_reaches_beyond_tensor_maths_is_refused_before_it_runs(tmp_path, cls, message):
    marker = tmp_path / "created-by-the-model"
    path = _export(cls, tmp_path, marker)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match=message):
        load_model(path, device="cpu")
    assert not marker.exists()


def test_every_shipped_model_passes_the_check_in_a_few_milliseconds():
    from actionmd.model_file import check_operations
    files = sorted(glob.glob(str(REPOSITORY / "models" / "*" / "*.pt")))
    assert files
    for path in files:
        module = load_model(path, device="cpu").module
        start = time.perf_counter()
        check_operations(module, path)
        assert time.perf_counter() - start < 0.5, path  # measured ~10 ms each
