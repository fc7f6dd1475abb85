"""Where a model extrapolates: atoms closer than any pair of their species in its training data.

A learned action knows only the configurations its data held. Two atoms pushed closer than any such pair
in the training frames are somewhere the model never saw, and the solver still converges there: the
dynamics is then the network's extrapolation, not physics, and nothing else would say so. The exporter
records the closest distance per species pair (metadata ``training_range.closest_pair``); the engines
warn, once per run, when a step starts with a pair closer than ``MARGIN`` times it.
"""
from __future__ import annotations

import numpy as np
import vesin
from ase.data import chemical_symbols

MARGIN = 0.95  # the training minimum is itself an extreme of thousands of frames: a little below is normal


class ExtrapolationWarning(UserWarning):
    """The system left the configurations the model was trained on."""


def pair_key(z1: int, z2: int) -> str:
    """'10-54': the two atomic numbers, smaller first (JSON object keys are strings)."""
    a, b = sorted((int(z1), int(z2)))
    return f"{a}-{b}"


def closest_pairs(segments, cutoff: float) -> dict[str, float]:
    """Per species pair, the smallest distance (Å) between two atoms in any frame of ``segments``
    (actionmd.data Segments: periodic cells); pairs farther apart than ``cutoff`` everywhere are left out."""
    closest: dict[str, float] = {}
    finder = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    for segment in segments:
        numbers = np.asarray(segment.atomic_numbers)
        for positions in segment.positions:
            i, j, d = finder.compute(positions, segment.cell, True, "ijd")
            if len(d) == 0:
                continue
            low, high = np.minimum(numbers[i], numbers[j]), np.maximum(numbers[i], numbers[j])
            codes = low * 1000 + high
            order = np.lexsort((d, codes))  # by pair, then distance: the first of each pair is its minimum
            first = np.ones(len(order), dtype=bool)
            first[1:] = codes[order][1:] != codes[order][:-1]
            for code, distance in zip(codes[order][first], d[order][first]):
                key = pair_key(code // 1000, code % 1000)
                closest[key] = min(closest.get(key, np.inf), float(distance))
    return dict(sorted(closest.items()))


def training_range(segments, cutoff: float) -> dict:
    """The metadata entry the exporter writes: {"closest_pair": {"Z1-Z2": Å, ...}}."""
    return {"closest_pair": closest_pairs(segments, cutoff)}


class ClosestPairWatch:
    """Checks each step's start against the training data's closest pairs; warns the first time only.
    It finds only pairs within MARGIN x the largest training minimum, which a system the model knows
    rarely has, so a step pays for one short-range neighbour search (~0.3 ms for 864 atoms)."""

    def __init__(self, training_range: dict | None):
        closest = (training_range or {}).get("closest_pair") or {}
        self.closest = {key: float(value) for key, value in closest.items()}
        self._pairs = [(*(int(z) for z in key.split("-")), value) for key, value in self.closest.items()]
        self.reach = MARGIN * max(self.closest.values(), default=0.0)
        self.finder = vesin.NeighborList(cutoff=self.reach, full_list=False) if self.reach > 0 else None
        self.warned = False

    def check(self, positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc) -> str | None:
        """The warning text for the closest pair below MARGIN x its training minimum, if any (else None)."""
        if self.warned or self.finder is None or len(positions) < 2:
            return None
        i, j, distances = self.finder.compute(positions, cell, list(pbc), "ijd")
        if len(distances) == 0:
            return None
        limit = self._limits(numbers[i], numbers[j])
        ratio = distances / limit
        worst = int(np.argmin(ratio))
        if not ratio[worst] < MARGIN:
            return None
        self.warned = True
        a, b = int(i[worst]), int(j[worst])
        names = "–".join(chemical_symbols[z] for z in sorted((numbers[a], numbers[b])))
        return (f"atoms {a} and {b} are {distances[worst]:.3f} Å apart, closer than any {names} pair in the "
                f"model's training data ({limit[worst]:.3f} Å): the dynamics there is the network's "
                "extrapolation, not physics (this warning is given once). Check the structure, or train with "
                "data that covers such configurations.")

    def _limits(self, zi: np.ndarray, zj: np.ndarray) -> np.ndarray:
        """The training minimum of each pair's species pair (inf where the data held no such pair)."""
        low, high = np.minimum(zi, zj), np.maximum(zi, zj)
        limit = np.full(len(zi), np.inf)
        for a, b, value in self._pairs:
            limit[(low == a) & (high == b)] = value
        return limit
