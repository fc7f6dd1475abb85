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


@pytest.mark.parametrize("extra_fix", ["tol 1e-8 tol 1e-6", "onfail warn onfail error", "skin 1.0 maxiter 5 skin 2.0"])
def test_a_keyword_given_twice_is_an_error(run_lmp, extra_fix):
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("lj.pt", extra_fix=extra_fix))
    keyword = extra_fix.split()[0]
    assert r.returncode != 0 and f"keyword '{keyword}' is given twice; give it once" in r.output, r.output[-3000:]


def test_an_infinite_velocity_is_named_as_non_finite(run_lmp):
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("lj.pt", steps=1, pre="variable big atom 1e308*1e308\nset atom 3 vx v_big"))
    assert r.returncode != 0, r.output[-3000:]
    assert "atom 3 has a non-finite position or velocity" in r.output and "comm_modify cutoff" not in r.output, \
        r.output[-3000:]


def test_onfail_warn_stops_at_a_residual_far_beyond_a_near_miss(run_lmp):
    """Overlapping atoms: one Anderson iteration leaves a residual of Å, not a near miss to warn of."""
    models.lj_argon(run_lmp.dir / "lj.pt")
    argon_data(run_lmp.dir / "ar.data")
    r = run_lmp(lj_script("lj.pt", steps=1, extra_fix="maxiter 1 tol 1e-30 fallback no onfail warn",
                          pre="set atom 2 x 0.6 y 0.0 z 0.0\nset atom 1 x 0.0 y 0.0 z 0.0"))
    assert r.returncode != 0, r.output[-3000:]
    assert "is beyond 0.1 A, where the last iterate is not a step of the model's map at all, so 'onfail warn' " \
           "stops too" in r.output, r.output[-3000:]
