"""Training loop: force pretraining of the potential-like term, then action + predictor losses.

Split by trajectory, AdamW with ReduceLROnPlateau, a checkpoint every epoch (resumed automatically), a
CSV log and progress bars. The action and the predictor are separate networks with separate losses, so
each keeps the weights of its own best validation epoch, and early stopping follows the network being
trained (the action; the predictor under freeze_action): a flat action loss stops the run even while
the predictor still improves (a frozen-action run can then train the predictor on). Multi-GPU and
multi-node through torch.distributed: launch with `torchrun`, and every rank trains on its shard of the
batches under DistributedDataParallel.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..model_file import DTYPES
from ..progress import progress_bar
from ..solver import SolverOptions
from .batch import Frame, make_batch
from .checks import choice, flag, number, whole
from .loss import action_loss, baselines, force_loss, predictor_loss
from .run_files import load_run_file


@dataclass
class TrainingOptions:
    epochs: int = 100
    pretrain_epochs: int = 0          # force pretraining of V before the action loss
    batch_frames: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 15                # epochs without validation improvement before stopping
    lr_patience: int = 5
    predictor_weight: float = 1.0
    seed: int = 0
    rollout_steps: int = 50           # a rollout with the real solver after training (0: none)
    rollout_dtype: str | None = None  # run it as a float64 export would ("float64"); None: the training dtype
    rollout_solver: dict = field(default_factory=dict)  # SolverOptions of the rollout: tol, maxiter, method, ...
    freeze_action: bool = False       # train the predictor only (the action comes from start_from)
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        """Every value is checked here, not after hours of training; numeric strings become numbers (YAML 1.1
        reads ``learning_rate: 1e-3`` as a string)."""
        for key, minimum in INTEGER_OPTIONS.items():
            setattr(self, key, whole(key, getattr(self, key), minimum))
        for key, (minimum, exclusive) in REAL_OPTIONS.items():
            setattr(self, key, number(key, getattr(self, key), minimum, exclusive=exclusive))
        for key in ("freeze_action", "progress"):
            flag(key, getattr(self, key))
        choice("device", self.device, DEVICES)
        if self.rollout_dtype is not None and self.rollout_dtype not in tuple(DTYPES):
            raise ValueError(f"rollout_dtype must be one of {sorted(DTYPES)} or left out (the training dtype), "
                             f"got {self.rollout_dtype!r}")
        valid = {f.name for f in fields(SolverOptions)}
        if not isinstance(self.rollout_solver, dict) or set(self.rollout_solver) - valid:
            raise ValueError(f"rollout_solver takes a mapping of {sorted(valid)}, got {self.rollout_solver!r}")
        self.rollout_solver = _solver_values(self.rollout_solver)
        try:
            SolverOptions(**self.rollout_solver)
        except ValueError as err:
            raise ValueError(f"rollout_solver: {err}") from None


INTEGER_OPTIONS = {"epochs": 1, "pretrain_epochs": 0, "batch_frames": 1, "patience": 1, "lr_patience": 0, "seed": 0,
                   "rollout_steps": 0}
REAL_OPTIONS = {"learning_rate": (0.0, True), "weight_decay": (0.0, False), "predictor_weight": (0.0, False)}
DEVICES = ("cpu", "cuda")  # cuda: each rank takes the GPU of its LOCAL_RANK


def _solver_values(solver: dict) -> dict:
    """The rollout's solver options with their numbers checked (``tol: 1e-6`` is a string in YAML 1.1)."""
    solver = dict(solver)
    if solver.get("tol") is not None:
        solver["tol"] = number("rollout_solver.tol", solver["tol"])  # its range: SolverOptions
    for key in ("maxiter", "krylov_dim", "anderson_memory"):
        if key in solver:
            solver[key] = whole(f"rollout_solver.{key}", solver[key], 1)
    if "newton_fallback" in solver:
        flag("rollout_solver.newton_fallback", solver["newton_fallback"])
    return solver


class Objective(nn.Module):
    """The losses as a module's forward, so DistributedDataParallel can wrap them."""

    def __init__(self, model: nn.Module, stride: float, baseline: torch.Tensor):
        super().__init__()
        self.model, self.stride = model, stride
        self.baseline = [float(b) for b in baseline]  # [action, predictor, force]: losses are fractions of these
        self.phase = "action"
        self.freeze_action = False

    def forward(self, batch) -> torch.Tensor:
        # Only training differentiates the losses by the weights: validation (model.eval()) needs the
        # action's and the potential's gradients by positions and momenta, not their double-backward graph.
        training = self.model.training
        if self.phase == "pretrain":
            force = force_loss(self.model.action.potential_energy_per_atom, batch, self.stride, create_graph=training)
            return (force / self.baseline[2]).reshape(1)
        if self.freeze_action and training:  # the frozen action's loss is constant: skip its cost
            predictor = predictor_loss(self.model, batch, self.stride) / self.baseline[1]
            return torch.stack([torch.zeros_like(predictor), predictor])
        losses = [action_loss(self.model, batch, self.stride, create_graph=training) / self.baseline[0]]
        if hasattr(self.model, "predict"):
            with torch.set_grad_enabled(training):
                losses.append(predictor_loss(self.model, batch, self.stride) / self.baseline[1])
        return torch.stack(losses)


@dataclass
class History:
    epoch: int = 0
    best_validation: float = math.inf   # the best weights' score: best action + predictor_weight x best predictor
    best_epoch: int = -1                # the best epoch of the network being trained (it decides early stopping)
    stale_epochs: int = 0
    rows: list = field(default_factory=list)
    best_action: float = math.inf
    best_action_epoch: int = -1
    best_predictor: float = math.inf
    best_predictor_epoch: int = -1

    def from_rows(self) -> "History":
        """A checkpoint written before the two losses kept their own best: both from its best epoch's row."""
        if self.best_action_epoch < 0 and self.best_epoch > 0:
            row = self.rows[self.best_epoch - 1]
            self.best_action, self.best_predictor = row["val_action"], row["val_predictor"]
            self.best_action_epoch = self.best_predictor_epoch = self.best_epoch
        return self


class TrainingDiverged(ValueError):
    """A non-finite loss: the weights are lost, so training stops at once (the last good checkpoint stays)."""


RUN_FILES = ("model.pt", "log.csv", "summary.json")  # written only once a checkpoint exists


def split_by_trajectory(trajectories: list[list[Frame]], validation_fraction: float, seed: int):
    """Whole trajectories go to one side, so validation frames are never neighbours of training ones;
    each side keeps at least one trajectory."""
    number("validation_fraction", validation_fraction, 0.0, 1.0, exclusive=True)
    if len(trajectories) < 2:
        raise ValueError(f"need at least 2 trajectories to split train/validation by trajectory, got "
                         f"{len(trajectories)}; record more segments")
    order = np.random.default_rng(seed).permutation(len(trajectories))
    n_val = min(len(trajectories) - 1, max(1, round(validation_fraction * len(trajectories))))
    validation = [f for k in order[:n_val] for f in trajectories[k]]
    training = [f for k in order[n_val:] for f in trajectories[k]]
    return training, validation


class Trainer:
    """Trains ``model`` (a LearnedAction[WithPredictor]) on frames; writes into ``directory``."""

    def __init__(self, model: nn.Module, metadata: dict, training: list[Frame], validation: list[Frame],
                 directory: str | Path, options: TrainingOptions, reference_energy=None,
                 no_reference_energy: str | None = None, finish: bool = False):
        """``reference_energy``: frames -> potential energies (eV) under the reference potential, for the
        energy drift of the closing rollout (actionmd.training.rollout); None leaves it out, and
        ``no_reference_energy`` (why) then stands in the rollout summary's ``energy``. ``finish``: train no
        further epochs; close the run from its checkpoint's best weights (after a stop)."""
        self.finish = finish
        if not training or not validation:
            raise ValueError("empty dataset: training and validation need at least one frame each")
        self.metadata, self.options = metadata, options
        self.directory = Path(directory)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.device = torch.device(options.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.dtype = next(model.parameters()).dtype
        self.model = model.to(self.device)
        self.stride = float(metadata["stride"])
        self.training = self._batches(training)
        self.validation = self._batches(validation)
        self.validation_start = validation[0]
        self.reference_energy = reference_energy
        self.no_reference_energy = no_reference_energy
        if len(self.training) < self.world:
            raise ValueError(f"{len(self.training)} training batches cannot feed {self.world} ranks; use a "
                             "smaller batch_frames, more data, or fewer ranks")
        if options.pretrain_epochs and any(b.forces is None for b in self.training):
            raise ValueError("pretrain_epochs > 0 needs reference forces in every training frame")
        if options.freeze_action:
            if not hasattr(model, "predictor") or options.pretrain_epochs:
                raise ValueError("freeze_action trains the predictor only: it needs a model with a predictor "
                                 "and pretrain_epochs: 0 (force pretraining trains the action)")
            for parameter in self.model.action.parameters():
                parameter.requires_grad_(False)
        self.objective = Objective(self.model, self.stride, baselines(self.training, self.stride))
        self.objective.freeze_action = options.freeze_action
        # buffers are constants (masses, basis frequencies): nothing to broadcast at each forward
        self.wrapped = (nn.parallel.DistributedDataParallel(self.objective, find_unused_parameters=True,
                                                            broadcast_buffers=False)
                        if self.world > 1 else self.objective)
        self.optimizer = torch.optim.AdamW([q for q in self.model.parameters() if q.requires_grad],
                                           lr=options.learning_rate,
                                           weight_decay=options.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5,
                                                                    patience=options.lr_patience)
        self.history = History()
        self.best_state = None    # the best weights so far: each network's from its own best epoch
        self.checkpoint = self.directory / "checkpoint.pt"
        self._check_directory()
        if self.checkpoint.exists():
            self._resume()

    def _batches(self, frames: list[Frame]):
        meta, size = self.metadata, self.options.batch_frames
        return [make_batch(frames[k:k + size], meta["species"], meta["masses"], meta["cutoff"], self.dtype,
                           self.device) for k in range(0, len(frames), size)]

    # --- checkpoints ---------------------------------------------------------------------------------

    def _state(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": asdict(self.history),
                "metadata": self.metadata, "options": asdict(self.options)}

    def _check_directory(self):
        """Refuse a folder that is not a run of this config: training would overwrite its model.pt and mix its
        rows into a foreign log.csv."""
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"output {self.directory} is a file, not a folder; choose another output")
        found = [name for name in RUN_FILES if (self.directory / name).exists()]
        if found and not self.checkpoint.exists():
            raise ValueError(f"output {self.directory} already holds {', '.join(found)} but no checkpoint.pt, so it "
                             "is not a run to resume and training would overwrite them; choose another output "
                             "or move those files away")

    def _resume(self):
        state = load_run_file(self.checkpoint, map_location=self.device)
        differences = model_differences(state["metadata"], self.metadata)
        if differences:
            scales = any(d.split(":")[0].endswith("_scale") for d in differences)
            raise ValueError(f"{self.checkpoint} belongs to a different model ({'; '.join(differences)})"
                             + ("; the scales come from the training frames, so the data files, every, "
                                "validation_fraction or seed changed" if scales else "")
                             + "; use a new output directory, or delete the checkpoint to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["options"].get("learning_rate") != self.options.learning_rate:
            # a lowered learning_rate after a divergence must take effect, not the checkpoint's rate
            for group in self.optimizer.param_groups:
                group["lr"] = self.options.learning_rate
        self.history = History(**state["history"]).from_rows()
        best = self.directory / "best_weights.pt"
        if best.exists():
            self.best_state = load_run_file(best, map_location=self.device)

    def _save(self, best: bool):
        if self.rank != 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if best:  # first: a kill between the two leaves better best weights, never a checkpoint without them
            _save_atomically(self.best_state, self.directory / "best_weights.pt")
        _save_atomically(self._state(), self.checkpoint)

    def _write_log(self):
        """log.csv from the checkpoint's rows, whole: a kill between checkpoint and log cannot drop a row."""
        if self.rank != 0 or not self.history.rows:
            return
        log = self.directory / "log.csv"
        partial = log.with_suffix(".tmp")
        with partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.history.rows[0]))
            writer.writeheader()
            writer.writerows(self.history.rows)
        partial.replace(log)

    # --- loop ----------------------------------------------------------------------------------------

    def _run_epoch(self, batches, train: bool) -> np.ndarray:
        if train:  # the same shuffle on every rank; equal shards, since DDP needs equal backward counts
            order = np.random.default_rng(self.options.seed + self.history.epoch).permutation(len(batches))
            batches = [batches[k] for k in order[: len(batches) // self.world * self.world]]
        mine = batches[self.rank::self.world]
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # summed losses, count
        for batch in progress_bar(mine, enabled=self.options.progress and self.rank == 0, leave=False,
                          desc="train" if train else "validate"):
            # validation shards may be uneven: evaluate without DDP, whose forward is a collective
            losses = self.wrapped(batch) if train else self.objective(batch)
            if train:
                weights = torch.ones_like(losses)
                if len(losses) > 1:
                    weights[1] = self.options.predictor_weight
                self.optimizer.zero_grad()
                (losses * weights).sum().backward()
                self.optimizer.step()
            totals[: len(losses)] += losses.detach().to(torch.float64)
            totals[2] += 1
        if self.world > 1:
            dist.all_reduce(totals)
        return (totals[:2] / totals[2].clamp(min=1)).cpu().numpy()

    def fit(self) -> History:
        options, history = self.options, self.history
        total = options.pretrain_epochs + options.epochs
        if self.finish and history.best_epoch <= 0:
            raise ValueError(f"--finish: {self.directory} has no finished epoch past force pretraining to finish "
                             "from; run actionmd train without --finish")
        while not self.finish and history.epoch < total and history.stale_epochs < options.patience:
            start = time.perf_counter()
            pretraining = history.epoch < options.pretrain_epochs
            self.objective.phase = "pretrain" if pretraining else "action"
            self.model.train()
            train = self._run_epoch(self.training, train=True)
            self.model.eval()
            validation = self._run_epoch(self.validation, train=False)
            if not (np.isfinite(train).all() and np.isfinite(validation).all()):
                raise self._diverged(train, validation)
            score = float(validation[0] + options.predictor_weight * validation[1])
            history.epoch += 1
            improved = False
            if not pretraining:
                self.scheduler.step(score)
                improved = self._keep_best(validation)
            # plain floats, not numpy scalars: a checkpoint holds tensors and plain containers only
            row = {"epoch": history.epoch, "phase": "pretrain" if pretraining else "action",
                   "train_action": float(train[0]), "train_predictor": float(train[1]),
                   "val_action": float(validation[0]), "val_predictor": float(validation[1]),
                   "lr": self.optimizer.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - start}
            history.rows.append(row)
            self._save(best=improved)
            self._write_log()
            if self.rank == 0:
                tqdm.write(self._epoch_line(row, total))
        if self.rank == 0 and history.stale_epochs >= options.patience and history.epoch < total:
            trained = "predictor" if options.freeze_action else "action"
            still = (f"; the predictor improved until epoch {history.best_predictor_epoch}: train it on with "
                     "freeze_action and start_from (docs/training.md)"
                     if not options.freeze_action and history.best_predictor_epoch == history.epoch else "")
            tqdm.write(f"stopped early: no better {trained} validation loss in {options.patience} epochs "
                       f"(patience){still}")
        if self.rank == 0:
            summary = asdict(history)
            if options.rollout_steps and history.best_epoch > 0:
                from .rollout import rollout_check
                summary["rollout"] = rollout_check(copy.deepcopy(self.best_model()), self.metadata,
                                                   self.validation_start, options.rollout_steps,
                                                   self.reference_energy, dtype=options.rollout_dtype,
                                                   solver=SolverOptions(**options.rollout_solver))
                if self.reference_energy is None and self.no_reference_energy:
                    summary["rollout"]["energy"] = {"not_evaluated": self.no_reference_energy}
            self.summary = summary
            (self.directory / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        return history

    def _keep_best(self, validation) -> bool:
        """Keep each network's weights of its own lowest validation loss; count the epochs since the network
        being trained improved. Whether any best weights changed (to be saved)."""
        history, epoch = self.history, self.history.epoch
        action_better = float(validation[0]) < history.best_action
        predictor_better = float(validation[1]) < history.best_predictor
        if action_better:
            history.best_action, history.best_action_epoch = float(validation[0]), epoch
        if predictor_better:
            history.best_predictor, history.best_predictor_epoch = float(validation[1]), epoch
        trained_better = predictor_better if self.options.freeze_action else action_better
        history.stale_epochs = 0 if trained_better else history.stale_epochs + 1
        history.best_epoch = history.best_predictor_epoch if self.options.freeze_action else history.best_action_epoch
        history.best_validation = history.best_action + self.options.predictor_weight * history.best_predictor
        if not (action_better or predictor_better):
            return False
        state = self.model.state_dict()
        if self.best_state is None:
            self.best_state = {k: v.detach().clone() for k, v in state.items()}
        for key, value in state.items():
            if predictor_better if key.startswith("predictor.") else action_better:
                self.best_state[key] = value.detach().clone()
        return True

    def _diverged(self, train, validation) -> TrainingDiverged:
        kept = (f"the checkpoint of epoch {self.history.epoch} is kept in {self.directory}" if self.history.epoch
                else "no epoch had finished, so nothing was saved")
        again = " to go on from there" if self.history.epoch else ""
        return TrainingDiverged(
            f"epoch {self.history.epoch + 1}: the loss is not finite (training {train[0]:.4g}, validation "
            f"{validation[0]:.4g}), so training stopped; {kept}. Lower training.learning_rate (now "
            f"{self.options.learning_rate:g}) and rerun the same command{again}")

    def _epoch_line(self, row: dict, total: int) -> str:
        """One line per epoch, so progress shows without reading log.csv."""
        head = f"epoch {row['epoch']}/{total} {row['phase']}: "
        if row["phase"] == "pretrain":
            return head + (f"force loss train {row['train_action']:.4g}, validation {row['val_action']:.4g}, "
                           f"{row['seconds']:.1f} s")
        predictor = hasattr(self.model, "predict")
        train = f"{row['train_action']:.4g}" + (f" (predictor {row['train_predictor']:.4g})" if predictor else "")
        validation = f"{row['val_action']:.4g}" + (f" (predictor {row['val_predictor']:.4g})" if predictor else "")
        h = self.history
        best = f"best {h.best_action:.4g} at epoch {h.best_action_epoch}" + (
            f" (predictor {h.best_predictor:.4g} at epoch {h.best_predictor_epoch})" if predictor else "")
        return head + f"train {train}, validation {validation}, {best}, lr {row['lr']:.3g}, {row['seconds']:.1f} s"

    def best_model(self) -> nn.Module:
        """The model with the weights of the best validation epoch."""
        best = self.directory / "best_weights.pt"
        if not best.exists():
            raise ValueError(f"{best} is missing: no action epoch has finished in {self.directory}")
        self.model.load_state_dict(load_run_file(best, map_location=self.device))
        return self.model


def _save_atomically(state, path: Path) -> None:
    """Write then rename: a kill mid-write never leaves a truncated file."""
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)


def model_differences(old: dict, new: dict) -> list[str]:
    """What differs between two models' metadata, ignoring the 'training' record (how the config and data
    paths were typed, the description) and the data's 'training_range' (a run started before it was
    recorded): those do not change the model a checkpoint can resume."""
    differences = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
                   for key in sorted((set(old) | set(new)) - {"training", "training_range", "architecture"})
                   if old.get(key) != new.get(key)]
    a, b = old.get("architecture") or {}, new.get("architecture") or {}
    return differences + [f"architecture.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                          if a.get(k) != b.get(k)]
