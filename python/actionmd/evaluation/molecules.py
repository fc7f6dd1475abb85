"""Water molecules from bare O/H coordinates: each H belongs to its nearest O.

Trajectory files carry no bonds, yet the SPC/Fw potential needs the O-H bonds and H-O-H angle, and
the molecular temperatures need molecules; in liquid water at ordinary conditions the nearest O is
the bonded one (1.0 Å against ~1.8 Å for a hydrogen bond).
"""
from __future__ import annotations

import numpy as np
import vesin
from ase.geometry import wrap_positions

from .trajectory import EvaluationError

O, H = 8, 1
MAX_OH = 1.6  # Å: an H farther than this from every O is not in a water molecule


def looks_like_water(numbers: np.ndarray) -> bool:
    """Only O and H, two H per O."""
    numbers = np.asarray(numbers)
    n_o, n_h = int((numbers == O).sum()), int((numbers == H).sum())
    return n_o > 0 and n_o + n_h == len(numbers) and n_h == 2 * n_o


def water_molecules(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(M, 3) atom indices [O, H, H], one row per O in index order; needs exactly two H per O."""
    numbers = np.asarray(numbers)
    if not looks_like_water(numbers):
        raise EvaluationError("molecules can only be rebuilt for water: the atoms must be O and H, two H per O")
    wrapped = wrap_positions(positions, cell, pbc=True)
    i, j, d = vesin.NeighborList(cutoff=MAX_OH, full_list=False).compute(wrapped, cell, True, "ijd")
    oh = numbers[i] + numbers[j] == O + H
    i, j, d = i[oh], j[oh], d[oh]
    oxygen = np.where(numbers[i] == O, i, j)
    hydrogen = np.where(numbers[i] == O, j, i)
    order = np.lexsort((d, hydrogen))  # per H, nearest O first
    hydrogen, oxygen = hydrogen[order], oxygen[order]
    first = np.unique(hydrogen, return_index=True)[1]
    hydrogen, oxygen = hydrogen[first], oxygen[first]
    lonely = np.setdiff1d(np.flatnonzero(numbers == H), hydrogen)
    if len(lonely):
        raise EvaluationError(f"cannot rebuild water molecules: H atom {int(lonely[0])} has no O within {MAX_OH} Å")
    counts = np.bincount(oxygen, minlength=len(numbers))[numbers == O]
    if (counts != 2).any():
        k = int(np.flatnonzero(numbers == O)[np.flatnonzero(counts != 2)[0]])
        raise EvaluationError(f"cannot rebuild water molecules: O atom {k} is the nearest O of "
                              f"{int(counts[counts != 2][0])} H atoms instead of 2")
    pairs = np.lexsort((hydrogen, oxygen))
    hs = hydrogen[pairs].reshape(-1, 2)
    return np.column_stack([oxygen[pairs][::2], hs])
