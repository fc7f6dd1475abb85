"""One stride of an actionmd model on a whole system, in model units (Å, u·Å/fs, fs, u).

Engine-neutral: the ASE integrators wrap it, and tests drive it directly. It owns the neighbour list,
the initial guess and the solver, and it checks the system against the model (species, masses).
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import replace

import numpy as np
import torch

from .allocator import keep_large_buffers, malloc_choice
from .extrapolation import ClosestPairWatch, ExtrapolationWarning
from .local_frame import LocalFrame
from .model_file import LoadedModel, load_model
from .neighbors import VerletList
from .solver import DEFAULT_TOL, SolverOptions, StepReport, solve

GUESSES = ("predictor", "free_flight", "previous")
# Below this a float32 model's gradients are round-off (~1e-7 relative of strides' displacements)
FLOOR_TOL = {torch.float32: 1e-6}
MODES = ("action", "predictor")


class ActionMap:
    """The midpoint action map (mode='action') or the model's direct prediction (mode='predictor')."""

    def __init__(self, model: str | LoadedModel, *, mode: str = "action", guess: str | None = None,
                 solver: SolverOptions | None = None, skin: float = 1.0, device: str | None = None):
        if not isinstance(model, (str, os.PathLike, LoadedModel)):
            shown = " ".join(repr(model).split())  # one line, however long the object's repr
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise TypeError(f"model must be the path of an actionmd model file or a LoadedModel, got "
                            f"{type(model).__name__} {shown}")
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device=device)
        meta = self.model.metadata
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        guess = guess or ("predictor" if meta.has_predictor else "free_flight")
        if guess not in GUESSES:
            raise ValueError(f"guess must be one of {GUESSES}, got {guess!r}")
        if "predictor" in (mode, guess) and not meta.has_predictor:
            raise ValueError(f"{self.model.path}: this model has no predictor (has_predictor is false); "
                             "use mode='action' with guess='free_flight' or 'previous'")
        self.device, self.dtype = self.model.device, meta.torch_dtype
        malloc_choice()  # a mistaken ACTIONMD_MALLOC fails here, not at the first step
        solver = solver or SolverOptions()
        # the state is float64 here; the reachable tolerance is set by the model's dtype
        self.solver = replace(solver, tol=solver.tol if solver.tol is not None else DEFAULT_TOL[self.dtype])
        if self.solver.tol < FLOOR_TOL.get(self.dtype, 0.0):
            warnings.warn(f"tol={self.solver.tol:g} Å is below what this {meta.dtype} model resolves reliably "
                          f"(~{FLOOR_TOL[self.dtype]:g} Å; default {DEFAULT_TOL[self.dtype]:g}): its steps may "
                          "fail to converge. Use a float64 export for tighter solves.", UserWarning, stacklevel=3)
        self.mode, self.guess = mode, guess
        self.neighbors = VerletList(meta.cutoff, skin, self.device)
        self.type_masses = torch.tensor(meta.masses, dtype=torch.float64, device=self.device)
        self.watch = ClosestPairWatch(meta.extra.get("training_range"))
        self.threads = torch.get_num_threads()
        self.nsteps = 0
        self.last_report = StepReport(0, 0.0, 0, True)
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None
        # models that depend on relative positions only are solved near the origin (actionmd.local_frame)
        self.local_frame = LocalFrame() if self.model.metadata.translation_invariant else None

    @property
    def stride(self) -> float:
        return self.model.metadata.stride

    def types_of(self, numbers, masses=None) -> torch.Tensor:
        """Model type ids for atomic numbers; checks species and (optionally) masses against the model."""
        meta = self.model.metadata
        index = {z: t for t, z in enumerate(meta.species)}
        unknown = sorted({int(z) for z in numbers if int(z) not in index})
        if unknown:
            from ase.data import chemical_symbols
            raise ValueError(f"{self.model.path}: the model has no species "
                             f"{[chemical_symbols[z] for z in unknown]}; it knows "
                             f"{[chemical_symbols[z] for z in meta.species]}")
        types = np.array([index[int(z)] for z in numbers], dtype=np.int64)
        if masses is not None:
            expected = np.asarray(meta.masses)[types]
            bad = np.flatnonzero(np.abs(np.asarray(masses) - expected) > 1e-6 * expected)
            if bad.size:
                i = bad[0]
                raise ValueError(f"atom {i} has mass {masses[i]:.6f} u but the model was made for "
                                 f"{expected[i]:.6f} u ({bad.size} atom(s) differ); set the model's masses "
                                 "on the atoms (atoms.set_masses) or use a model made for these masses")
        return torch.from_numpy(types).to(self.device)

    def _restore_threads(self):
        """A LAMMPS instance made in this process after the map (e.g. by ASE's LAMMPSlib, on its first
        calculation) sets OpenMP, and with it torch, to 1 thread when OMP_NUM_THREADS is unset. Without
        LAMMPS in the process, the user chose the new count, and it is kept."""
        if "lammps" not in sys.modules:
            self.threads = torch.get_num_threads()
            return
        warnings.warn(f"torch's thread count fell from {self.threads} to 1 since this integrator was made (an "
                      "in-process LAMMPS resets it to 1 unless OMP_NUM_THREADS is set); restoring "
                      f"{self.threads}. Set OMP_NUM_THREADS, or call torch.set_num_threads before making the "
                      "integrator, to choose the count yourself.", RuntimeWarning, stacklevel=4)
        torch.set_num_threads(self.threads)

    def _check_extrapolation(self, q: np.ndarray, types: torch.Tensor, cell: np.ndarray, pbc):
        """Warn (once) when two atoms start a step closer than the model's training data ever held them."""
        numbers = np.asarray(self.model.metadata.species)[types.cpu().numpy()]
        message = self.watch.check(np.asarray(q, dtype=np.float64), numbers, np.asarray(cell, dtype=np.float64), pbc)
        if message:
            warnings.warn(f"step {self.nsteps}: {message}", ExtrapolationWarning, stacklevel=4)

    def step(self, q: np.ndarray, p: np.ndarray, types: torch.Tensor, cell: np.ndarray, pbc):
        """Advance (q, p) by one stride; return (q', p', StepReport)."""
        if torch.get_num_threads() == 1 < self.threads:
            self._restore_threads()
        _check_finite(q, "position", "Å")
        _check_finite(p, "momentum", "u·Å/fs")
        if self.watch.closest and not self.watch.warned:
            self._check_extrapolation(q, types, cell, pbc)
        if self.nsteps == 0 and self.device.type == "cpu":
            keep_large_buffers(len(q))  # 2-3x faster evaluations above a few thousand atoms (actionmd.allocator)
        q_t = torch.as_tensor(q, dtype=torch.float64, device=self.device)
        p_t = torch.as_tensor(p, dtype=torch.float64, device=self.device)
        q_local = self.local_frame(q_t, cell, pbc) if self.local_frame else q_t
        masses = self.type_masses[types]
        module, dtype = self.model.module, self.dtype

        def model_inputs(positions):
            self.neighbors.update(positions.detach().cpu().numpy(), cell, pbc)
            return types, self.neighbors.edge_index, self.neighbors.edge_shifts(dtype)

        if self.mode == "predictor" or self.guess == "predictor":
            with torch.enable_grad():  # a predictor may differentiate internally (forces)
                delta_q, delta_p = module.predict(q_local.to(dtype), p_t.to(dtype), *model_inputs(q_local))
            guess = (delta_q.detach().to(torch.float64), delta_p.detach().to(torch.float64))
        elif self.guess == "previous" and self._previous is not None and self._previous[0].shape == q_t.shape:
            guess = self._previous
        else:
            guess = (p_t / masses.unsqueeze(1) * self.stride, torch.zeros_like(p_t))

        if self.mode == "predictor":
            dq, dp, report = guess[0], guess[1], StepReport(0, float("nan"), 1, True)
        else:
            def action(qbar, pbar):
                return module(qbar.to(dtype), pbar.to(dtype), *model_inputs(qbar)).sum()
            dq, dp, report = solve(action, q_local, p_t, masses, self.stride, guess, self.solver, step=self.nsteps)
        self._previous = (dq, dp)
        self.nsteps += 1
        self.last_report = report
        return (q_t + dq).cpu().numpy(), (p_t + dp).cpu().numpy(), report


def _check_finite(values: np.ndarray, name: str, unit: str):
    """NaN or infinite input names the atom, rather than failing later inside the neighbour list."""
    with np.errstate(over="ignore"):
        if np.isfinite(values.sum()):  # one pass, no temporary: the common case
            return
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"atom {i} has a non-finite {name} {values[i].tolist()} ({unit}; {int(bad.sum())} "
                         "atom(s) affected): the state was corrupted before this step")
