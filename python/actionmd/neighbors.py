"""Verlet neighbour lists (vesin) in the layout of the model contract: edge_index[2,E], edge_shifts[E,3].

The list is built at ``cutoff + skin`` and stays valid while no atom has moved more than ``skin/2`` from
where it was built, so the midpoint positions may move during the implicit solve without a pair inside
the cutoff ever being missed (docs/model-format.md: a list cut exactly at the cutoff breaks reversibility).
"""
from __future__ import annotations

import numpy as np
import torch
import vesin


class VerletList:
    """Full neighbour list with a skin, rebuilt only when some atom moved more than skin/2."""

    def __init__(self, cutoff: float, skin: float, device: torch.device | str = "cpu"):
        if skin <= 0 and cutoff > 0:
            raise ValueError(f"neighbour skin must be positive (got {skin} Å): midpoints move during the solve")
        self.cutoff, self.skin, self.device = float(cutoff), float(skin), torch.device(device)
        self._built_at: np.ndarray | None = None
        self._cell: np.ndarray | None = None
        self._pbc: tuple[bool, ...] | None = None
        self.edge_index = torch.zeros((2, 0), dtype=torch.int64, device=self.device)
        self._shift_counts = np.zeros((0, 3))
        self.builds = 0

    def is_valid(self, positions: np.ndarray, cell: np.ndarray, pbc) -> bool:
        """True when the list built last still holds every pair within ``cutoff`` at ``positions``."""
        if self._built_at is None or self._built_at.shape != positions.shape:
            return False
        if not np.array_equal(cell, self._cell) or tuple(pbc) != self._pbc:
            return False
        if self.cutoff == 0:
            return True
        moved = np.sqrt(((positions - self._built_at) ** 2).sum(axis=1).max(initial=0.0))
        return bool(moved < 0.5 * self.skin)

    def update(self, positions: np.ndarray, cell: np.ndarray, pbc) -> bool:
        """Rebuild if needed; return whether a rebuild happened."""
        positions, cell = np.asarray(positions, dtype=np.float64), np.asarray(cell, dtype=np.float64)
        if self.is_valid(positions, cell, pbc):
            return False
        pbc = tuple(bool(x) for x in pbc)
        if self.cutoff > 0 and len(positions) > 0:
            _check_cell(cell, pbc)
            calculator = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=True)
            i, j, shifts = calculator.compute(positions, cell, list(pbc), "ijS")
            self.edge_index = torch.from_numpy(np.stack([i, j]).astype(np.int64)).to(self.device)
            self._shift_counts = shifts.astype(np.float64)
        else:
            self.edge_index = torch.zeros((2, 0), dtype=torch.int64, device=self.device)
            self._shift_counts = np.zeros((0, 3))
        self._built_at, self._cell, self._pbc = positions.copy(), cell.copy(), pbc
        self._shifts = torch.from_numpy(self._shift_counts @ cell).to(self.device)
        self.builds += 1
        return True

    def edge_shifts(self, dtype: torch.dtype) -> torch.Tensor:
        """Cartesian shift vectors (Å) of the edges, in the model's dtype."""
        return self._shifts.to(dtype)


def _check_cell(cell: np.ndarray, pbc: tuple[bool, ...]) -> None:
    """A periodic axis needs a cell vector, and the periodic vectors must span their own dimensions (vesin
    would otherwise say only that "the box matrix is not invertible")."""
    for axis in range(3):
        if pbc[axis] and np.linalg.norm(cell[axis]) == 0:
            raise ValueError(f"cell vector {axis} is zero but the system is periodic along it; "
                             "set a cell (atoms.set_cell) or turn periodicity off (atoms.pbc)")
    periodic = [axis for axis in range(3) if pbc[axis]]
    if periodic:
        values = np.linalg.svd(cell[periodic], compute_uv=False)
        if values[-1] <= 1e-10 * values[0]:
            raise ValueError(f"the periodic cell vectors {periodic} are linearly dependent (the cell has no volume "
                             f"along them: {cell[periodic].tolist()}); give vectors that span the periodic "
                             "directions (atoms.set_cell) or turn periodicity off (atoms.pbc)")
