"""Positions near the origin for the model, wherever drift or diffusion has carried the atoms.

A float32 model resolves a coordinate to ~|q| * 6e-8: 400 Å from the origin that is 2.4e-5 Å, above
the solver's 1e-5 Å tolerance (a Cu-Ni run translated there stopped with a SolverConvergenceError, and
closer in its steps already differed from the untranslated run's). The action is translation
invariant and periodic, so the step is the same for positions moved by whole cell vectors along the
periodic directions and shifted by a constant: the map solves in such a local frame (float64, before
any cast) and adds the displacements to the caller's positions.

The frame is kept between steps and re-anchored only when an atom strays far from it: moving atoms
across the cell every step would make the neighbour list's displacement test rebuild it every step.
"""
from __future__ import annotations

import torch

STRAY = 2.0  # re-anchor when a coordinate grows beyond this multiple of the frame's extent at anchoring


class LocalFrame:
    """q -> q - offset with a per-atom offset (whole cell vectors plus a common centre)."""

    def __init__(self):
        self.offset: torch.Tensor | None = None
        self.limit = 0.0
        self._cell: torch.Tensor | None = None
        self._pbc: tuple[bool, ...] = ()

    def __call__(self, q: torch.Tensor, cell, pbc) -> torch.Tensor:
        cell_t = torch.as_tensor(cell, dtype=torch.float64, device=q.device).reshape(3, 3)
        pbc = tuple(bool(x) for x in (pbc if hasattr(pbc, "__len__") else [pbc] * 3))
        if (self.offset is None or self.offset.shape != q.shape or pbc != self._pbc
                or not torch.equal(cell_t, self._cell)):
            self._anchor(q, cell_t, pbc)
        local = q - self.offset
        if len(q) and float(local.abs().max()) > self.limit:
            self._anchor(q, cell_t, pbc)
            local = q - self.offset
        return local

    def _anchor(self, q: torch.Tensor, cell: torch.Tensor, pbc: tuple[bool, ...]) -> None:
        offset = torch.zeros_like(q)
        periodic = torch.tensor(pbc, device=q.device)
        if len(q) and any(pbc) and abs(float(torch.linalg.det(cell))) > 1e-12:
            images = torch.floor(torch.linalg.solve(cell.T, q.T).T)  # q = fractional @ cell
            offset = torch.where(periodic, images, torch.zeros_like(images)) @ cell
        if len(q):
            offset = offset + (q - offset).mean(dim=0)
        self.offset, self._cell, self._pbc = offset, cell.clone(), pbc
        self.limit = STRAY * max(float((q - offset).abs().max()) if len(q) else 0.0, 1.0)
