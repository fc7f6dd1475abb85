"""Inputs that used to reach the user as a raw traceback or another library's words get one line naming
the problem and the fix."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from actionmd.model_file import ModelFileError, export_model, read_metadata
from actionmd.neighbors import VerletList
from actionmd.reference import lennard_jones

from ref_systems import NE_XE


def test_deeply_nested_metadata_is_one_line_from_actionmd_info(tmp_path):
    module, meta = lennard_jones(**NE_XE, cutoff=8.0, stride=8.0)
    good = tmp_path / "good.pt"
    export_model(module, good, meta)
    nested = tmp_path / "nested.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(nested, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/extra/actionmd.json"):
                data = json.dumps({**json.loads(data), "extra": "@"}).replace('"@"', "[" * 100000 + "]" * 100000)
            target.writestr(item, data)
    with pytest.raises(ModelFileError, match="actionmd.json nests its values too deeply to read"):
        read_metadata(nested)
    result = subprocess.run([sys.executable, "-m", "actionmd.cli", "info", str(nested)], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "too deeply" in result.stderr


@pytest.mark.parametrize("cell, pbc, message", [
    ([[10, 0, 0], [0, 10, 0], [0, 0, 0]], [True] * 3, "cell vector 2 is zero but the system is periodic along it"),
    ([[10, 0, 0], [0, 10, 0], [10, 0, 0]], [True] * 3, r"the periodic cell vectors \[0, 1, 2\] are linearly dependent"),
    ([[10, 0, 0], [20, 0, 0], [0, 0, 10]], [True, True, False], r"vectors \[0, 1\] are linearly dependent")])
def test_a_cell_without_volume_along_a_periodic_axis_is_named(cell, pbc, message):
    positions = np.random.default_rng(0).random((4, 3)) * 3
    with pytest.raises(ValueError, match=message):
        VerletList(5.0, skin=1.0).update(positions, np.array(cell, dtype=float), pbc)
    open_axis = VerletList(5.0, skin=1.0)  # a zero vector along an open axis is fine
    open_axis.update(positions, np.diag([10.0, 10.0, 0.0]), [True, True, False])
    assert open_axis.edge_index.shape[1] == 12


def test_onfail_warn_stops_at_a_residual_far_beyond_a_near_miss():
    """A stiff spring and one fixed-point sweep: the residual is Å, not a near miss that a warning may pass."""
    from actionmd.solver import SolverConvergenceError, SolverOptions, solve
    q = torch.full((2, 3), 5.0, dtype=torch.float64)
    p = torch.zeros(2, 3, dtype=torch.float64)

    def stiff(qbar, pbar):
        return (pbar**2).sum() / 2 + 1.0e4 * (qbar**2).sum() / 2

    with pytest.raises(SolverConvergenceError, match=r"step 3: .* The residual is beyond 0.1 Å, where the last "
                                                     r"iterate is not a step of the model's map at all"):
        solve(stiff, q, p, torch.ones(2, dtype=torch.float64), 1.0, (p, torch.zeros_like(p)),
              SolverOptions(method="fixed_point", maxiter=1, onfail="warn"), step=3)
