"""fix actionmd reads a model file as untrusted code (docs/trust.md): a graph that reaches files, processes
or foreign operators, or code that TorchScript would run while loading, is refused before any of it runs."""
from typing import Tuple

import pytest
import torch

import lmp_models as models
from lmp_inputs import AR, argon_data, lj_script


class WritesAFile(torch.nn.Module):
    """Argon LJ whose forward() also creates a file, as the fix's load-time check would run it."""

    def __init__(self, path: str):
        super().__init__()
        self.inner, self.path = models.LJAction(20.0, AR, 0.0104, 3.4, 5.0, 6.5), path

    def forward(self, positions, momenta, types, edge_index, edge_shifts):
        touched = torch.from_file(self.path, shared=True, size=1, dtype=positions.dtype)
        return self.inner(positions, momenta, types, edge_index, edge_shifts) + 0 * touched.sum()


class WritesAFileWhileLoading(models.LJAction):
    def __init__(self, path: str):
        super().__init__(20.0, AR, 0.0104, 3.4, 5.0, 6.5)
        self.path = path

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = bool(torch.from_file(self.path, shared=True, size=1).sum() == 0.0) or state[1]


@pytest.mark.parametrize("cls, message", [
    (WritesAFile, "forward() uses the operator aten::from_file, which an action model does not need"),
    (WritesAFileWhileLoading, "its code defines __setstate__, which TorchScript would run while loading it")])
def test_the_fix_refuses_a_model_that_touches_files_before_running_it(run_lmp, cls, message):
    marker = run_lmp.dir / "created-by-the-model"
    models.save(cls(str(marker)), run_lmp.dir / "evil.pt", models.metadata([18], [AR], 20.0, 6.5))
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("evil.pt"))
    assert r.returncode != 0 and message in r.output, r.output[-3000:]
    assert not marker.exists()


def test_an_ordinary_model_still_runs(run_lmp):
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("lj.pt", steps=1))
    assert r.returncode == 0, r.output[-3000:]
