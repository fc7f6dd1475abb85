"""Frames of (q, p) -> (q', p') pairs, and batches of them as one disjoint graph.

A frame holds one system at one time and the state one stride later, in model units (Å, u·Å/fs), plus
optionally the reference forces (eV/Å) at q for pretraining the potential-like term.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin


@dataclass
class Frame:
    numbers: np.ndarray          # [N] atomic numbers
    positions: np.ndarray        # [N,3] Å, at t
    momenta: np.ndarray          # [N,3] u·Å/fs, at t
    next_positions: np.ndarray   # [N,3] at t + stride (unwrapped relative to positions)
    next_momenta: np.ndarray     # [N,3]
    cell: np.ndarray             # [3,3] Å
    pbc: np.ndarray              # [3] bool
    forces: np.ndarray | None = None  # [N,3] eV/Å at t


@dataclass
class Batch:
    """Several frames as one graph; edges are built at the midpoint (qbar) where the model is evaluated."""

    types: torch.Tensor
    masses: torch.Tensor
    q: torch.Tensor
    p: torch.Tensor
    dq: torch.Tensor
    dp: torch.Tensor
    edge_index: torch.Tensor
    edge_shifts: torch.Tensor
    forces: torch.Tensor | None
    start_edge_index: torch.Tensor
    start_edge_shifts: torch.Tensor

    @property
    def qbar(self):
        return self.q + 0.5 * self.dq

    @property
    def pbar(self):
        return self.p + 0.5 * self.dp


def _edges(positions, cell, pbc, cutoff):
    if cutoff <= 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3))
    i, j, shifts = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(positions, cell, list(pbc), "ijS")
    return np.stack([i, j]).astype(np.int64), shifts.astype(np.float64) @ cell


def make_batch(frames: list[Frame], species: list[int], masses: list[float], cutoff: float,
               dtype: torch.dtype, device: torch.device | str = "cpu") -> Batch:
    """Concatenate frames; type ids follow ``species``; edges at the midpoint and at the start."""
    index = {z: t for t, z in enumerate(species)}
    offset = 0
    parts: dict[str, list] = {k: [] for k in ("types", "q", "p", "dq", "dp", "ei", "es", "ei0", "es0", "f")}
    for frame in frames:
        midpoint = 0.5 * (frame.positions + frame.next_positions)
        edge_index, shifts = _edges(midpoint, frame.cell, frame.pbc, cutoff)
        start_index, start_shifts = _edges(frame.positions, frame.cell, frame.pbc, cutoff)
        parts["types"].append(np.array([index[int(z)] for z in frame.numbers], dtype=np.int64))
        parts["q"].append(frame.positions)
        parts["p"].append(frame.momenta)
        parts["dq"].append(frame.next_positions - frame.positions)
        parts["dp"].append(frame.next_momenta - frame.momenta)
        parts["ei"].append(edge_index + offset)
        parts["es"].append(shifts)
        parts["ei0"].append(start_index + offset)
        parts["es0"].append(start_shifts)
        parts["f"].append(frame.forces)
        offset += len(frame.numbers)

    def cat(key, axis=0, kind=dtype):
        return torch.from_numpy(np.concatenate(parts[key], axis=axis)).to(device=device, dtype=kind)

    types = cat("types", kind=torch.int64)
    have_forces = all(f is not None for f in parts["f"])
    return Batch(types=types, masses=torch.tensor(masses, dtype=dtype, device=device)[types],
                 q=cat("q"), p=cat("p"), dq=cat("dq"), dp=cat("dp"),
                 edge_index=cat("ei", axis=1, kind=torch.int64), edge_shifts=cat("es"),
                 forces=cat("f") if have_forces else None,
                 start_edge_index=cat("ei0", axis=1, kind=torch.int64), start_edge_shifts=cat("es0"))
