"""`actionmd train CONFIG.yaml`: read the config, build data and model, train, export the best model.

    data: [lj.h5, ...]            # reference datasets written by `actionmd generate`
    stride: 16.0                  # fs, a multiple of the stored frame interval
    every: 4                      # use every 4th frame as a starting point
    validation_fraction: 0.25     # whole segments go to validation
    model: {cutoff: 6.0, features: 32, layers: 2, radial_size: 8, predictor: true, dtype: float32}
                                  # optional predictor_layers (default layers; layers - 1 keeps the
                                  # interaction_range at layers x cutoff: thinner LAMMPS ghost shells);
                                  # angular: true adds bond-angle moments (many-body potentials, e.g. SNAP)
    training: {epochs: 200, pretrain_epochs: 5, batch_frames: 2, learning_rate: 1.0e-3, patience: 20}
                                  # pretrain_epochs come on top of epochs (here 205 epochs at most)
                                  # the closing rollout runs as the model will: rollout_steps: 50,
                                  # rollout_dtype: float64, rollout_solver: {tol: 1.0e-6, anderson_memory: 30}
    output: runs/lj-mixture       # checkpoint.pt, log.csv, best_weights.pt, model.pt
    start_from: runs/earlier      # optional: a run whose best weights start every parameter they fit;
                                  # with training: {freeze_action: true} only the predictor trains (a new
                                  # predictor, e.g. predictor_angular: true, for an action already trained)
    reference_energy: {system: cuni}  # optional: the system (built-in name or your config file) whose
                                  # potential re-evaluates the closing rollout's energies; or
                                  # {run_data_file_commands: true} to run the LAMMPS lines stored in the data
                                  # files, which can run shell commands (docs/trust.md). Without it, only a
                                  # data file of an unmodified built-in system is re-evaluated.
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import strict_yaml
from ..extrapolation import training_range
from ..model_file import DTYPES, export_model
from ..models import build_learned_model, scales_from_frames
from ..neighbors import VerletList
from .dataset import frames_from_dataset
from .run_files import load_run_file
from .checks import choice, flag, number, whole
from .trainer import Trainer, TrainingOptions, model_differences, split_by_trajectory

MODEL_KEYS = {"cutoff", "features", "layers", "radial_size", "predictor", "predictor_layers", "angular",
              "predictor_angular", "dtype", "seed"}
TOP_KEYS = {"data", "stride", "every", "validation_fraction", "model", "training", "output", "description",
            "start_from", "reference_energy"}
REFERENCE_ENERGY_KEYS = {"system", "run_data_file_commands"}
SCALES = ("energy_scale", "momentum_scale", "length_scale", "velocity_scale")
ACTION_ARCHITECTURE = ("features", "layers", "radial_size", "angular")  # what start_from's action must share


class TrainConfigError(ValueError):
    """A training config that cannot be used as written."""


def read_config(path: str | Path) -> dict:
    try:
        config = strict_yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise TrainConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise TrainConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(config, dict):
        raise TrainConfigError(f"{path}: expected a mapping of keys {sorted(TOP_KEYS)}")
    try:
        _check_keys(config)
        _check_values(config)
        _check_training(config.get("training") or {})
    except ValueError as err:
        raise TrainConfigError(f"{path}: {err}") from None
    base = Path(path).parent
    config["data"] = [str(base / d) for d in config["data"]]
    _check_distinct(config["data"], path)
    config["output"] = str(base / config["output"])
    if config.get("start_from") is not None:
        config["start_from"] = str(base / config["start_from"])
    _resolve_reference_system(config, base, path)
    if (config.get("training") or {}).get("freeze_action") and not config.get("start_from"):
        raise TrainConfigError(f"{path}: training.freeze_action needs start_from: the run whose trained action "
                               "to keep")
    return config


def _check_keys(config: dict) -> None:
    """Unknown and missing keys, before any value is read."""
    unknown = set(config) - TOP_KEYS
    missing = {"data", "stride", "model", "output"} - set(config)
    if unknown or missing:
        raise ValueError("; ".join(([f"unknown key(s) {sorted(unknown)}"] if unknown else []) +
                                   ([f"missing key(s) {sorted(missing)}"] if missing else []))
                         + f" (valid keys: {sorted(TOP_KEYS)})")
    for section in ("model", "training"):
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise ValueError(f"{section} must be a mapping of keys, e.g. {section}: {{...}}, got {config[section]!r}")
    bad_model = set(config["model"] or {}) - MODEL_KEYS
    if bad_model or "cutoff" not in (config["model"] or {}):
        raise ValueError(f"model needs 'cutoff' and takes only {sorted(MODEL_KEYS)}"
                         + (f"; unknown {sorted(bad_model)}" if bad_model else ""))
    valid_training = {f.name for f in fields(TrainingOptions)}
    bad_training = set(config.get("training") or {}) - valid_training
    if bad_training:
        raise ValueError(f"unknown training key(s) {sorted(bad_training)}; valid: {sorted(valid_training)}")


def _check_values(config: dict) -> None:
    """Types and ranges of the top-level and model values, numeric strings made numbers (YAML 1.1 reads 1e-3
    as a string)."""
    data = [config["data"]] if isinstance(config["data"], str) else config["data"]
    if not isinstance(data, list) or not data or not all(isinstance(d, str) and d for d in data):
        raise ValueError(f"data must be a file or a list of files written by `actionmd generate`, got "
                         f"{config['data']!r}")
    config["data"] = data
    config["stride"] = number("stride", config["stride"], 0.0, exclusive=True)
    config["every"] = whole("every", config.get("every", 1), 1)
    config["validation_fraction"] = number("validation_fraction", config.get("validation_fraction", 0.25),
                                           0.0, 1.0, exclusive=True)
    for key in ("output", "start_from", "description"):
        value = config.get(key)
        if not (isinstance(value, str) and value) and (key == "output" or value is not None):
            raise ValueError(f"{key} must be a {'path' if key != 'description' else 'text'}, got {value!r}")
    _check_reference_energy(config.get("reference_energy"))
    model = config["model"]
    model["cutoff"] = number("model.cutoff", model["cutoff"], 0.0, exclusive=True)
    for key, minimum in (("features", 1), ("layers", 1), ("radial_size", 1), ("predictor_layers", 0), ("seed", 0)):
        if model.get(key) is not None:
            whole(f"model.{key}", model[key], minimum)
    for key in ("predictor", "angular", "predictor_angular"):
        if key in model:
            flag(f"model.{key}", model[key])
    if "dtype" in model:
        choice("model.dtype", model["dtype"], DTYPES)


def _check_reference_energy(setting) -> None:
    """reference_energy names either the user's own system or the explicit risk of running a data file's lines."""
    if setting is None:
        return
    if not isinstance(setting, dict) or set(setting) - REFERENCE_ENERGY_KEYS or len(setting) != 1:
        raise ValueError("reference_energy takes one of {system: NAME_OR_CONFIG} (your system re-evaluates the "
                         "energies) or {run_data_file_commands: true} (runs the LAMMPS lines stored in the data "
                         f"files), got {setting!r}")
    if "system" in setting and not (isinstance(setting["system"], str) and setting["system"]):
        raise ValueError(f"reference_energy.system must be a built-in system name or a config file, got "
                         f"{setting['system']!r}")
    if "run_data_file_commands" in setting:
        flag("reference_energy.run_data_file_commands", setting["run_data_file_commands"])


def _resolve_reference_system(config: dict, base: Path, config_path) -> None:
    """reference_energy.system as a path beside the config (or a built-in name), loaded now: a bad system
    is refused before training, not after it."""
    from ..data import ConfigError, builtin_systems
    from ..evaluation.energy import load_system
    system = (config.get("reference_energy") or {}).get("system")
    if system is None:
        return
    if system not in builtin_systems():
        system = str(base / system)
    try:
        load_system(system)
    except ConfigError as err:
        raise TrainConfigError(f"{config_path}: reference_energy.system {system}: {err}") from None
    config["reference_energy"] = {"system": system}


def _check_training(training: dict) -> None:
    """TrainingOptions' own checks, and a CUDA device that this machine has."""
    try:
        options = TrainingOptions(**training)
    except ValueError as err:
        raise ValueError(f"training.{err}") from None
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device is 'cuda', but torch finds no CUDA device here "
                         f"(torch {torch.__version__}); use device: cpu, or run where a GPU is")


def _check_distinct(paths: list[str], config_path) -> None:
    """The same file twice would put copies of its segments on both sides of the validation split."""
    seen = {}
    for path in paths:
        key = Path(path).resolve()
        if key in seen:
            raise TrainConfigError(f"{config_path}: data lists the same file twice ({seen[key]} and {path}); "
                                   "list each file once")
        seen[key] = path


# what a model file's "training" record keeps of the run's history (train's model.pt and export alike)
RECORDED_HISTORY = ("best_epoch", "best_validation", "best_action_epoch", "best_predictor_epoch")


def train_from_config(path: str | Path, progress: bool = True, finish: bool = False) -> Path | None:
    """Train as the config says; return the path of the exported model (None on ranks other than 0).
    ``finish``: no further epochs, close the stopped run from its checkpoint (rollout, export)."""
    config = read_config(path)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    options = TrainingOptions(**{**(config.get("training") or {}), "progress": progress})
    owns_group = distributed and not torch.distributed.is_initialized()
    if owns_group:
        if options.device == "cuda":  # bind this rank to its GPU before NCCL starts (else all use GPU 0)
            torch.cuda.set_device(_local_gpu())
        # the other ranks wait while rank 0 runs the closing rollout and exports: longer than NCCL's 10 min
        torch.distributed.init_process_group("nccl" if options.device == "cuda" else "gloo",
                                             timeout=datetime.timedelta(hours=6))
    try:
        exported = _train(config, path, options, finish)
        if owns_group:
            torch.distributed.barrier()  # every rank waits for rank 0's export
        return exported
    finally:
        if owns_group:
            # a rank that exits with gloo's threads alive can abort ("terminate called without an active
            # exception", seen in CI): tear the group down first
            torch.distributed.destroy_process_group()


def _local_gpu() -> int:
    """The GPU of this torchrun rank (LOCAL_RANK), refused by name when the node has fewer GPUs."""
    local, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= gpus:
        raise TrainConfigError(f"torchrun started local rank {local}, but this node has {gpus} GPU(s): use "
                               f"--nproc_per_node={gpus} or fewer with device: cuda")
    return local


def _train(config: dict, path, options: "TrainingOptions", finish: bool = False) -> Path | None:
    from ..data import load_dataset
    dataset = load_dataset(config["data"])
    stride = float(config["stride"])
    trajectories = frames_from_dataset(dataset, stride, every=int(config.get("every", 1)))
    training, validation = split_by_trajectory(trajectories, float(config.get("validation_fraction", 0.25)),
                                               seed=options.seed)
    species = sorted({int(z) for trajectory in trajectories for f in trajectory for z in f.numbers})
    masses = {int(z): float(m) for s in dataset.segments for z, m in zip(s.atomic_numbers, s.masses)}
    model_options = dict(config["model"])
    start = _start_weights(config["start_from"]) if config.get("start_from") else None
    scales = {k: start[1]["architecture"][k] for k in SCALES} if start else scales_from_frames(training, stride)
    module, metadata = build_learned_model(species, stride, masses=[masses[z] for z in species],
                                           **model_options, **scales)
    if start:
        _check_start(start[1], metadata, config["start_from"])
        _load_matching(module, start[0], config["start_from"], require_action=options.freeze_action)
    metadata["training_range"] = training_range(dataset.segments, metadata["cutoff"])
    metadata["training"] = {"config": str(path), "data": config["data"], "description": config.get("description"),
                            **({"start_from": config["start_from"]} if start else {})}
    reference_energy, no_reference_energy = _reference_energy(config["data"], config.get("reference_energy"))
    if no_reference_energy and int(os.environ.get("RANK", "0")) == 0:
        print(f"actionmd train: the closing rollout's {no_reference_energy}", flush=True)
    trainer = Trainer(module, metadata, training, validation, config["output"], options,
                      reference_energy=reference_energy, no_reference_energy=no_reference_energy, finish=finish)
    history = trainer.fit()
    output = Path(config["output"]) / "model.pt"
    if trainer.rank == 0:
        metadata["training"].update(epochs=history.epoch, **{k: getattr(history, k) for k in RECORDED_HISTORY})
        export_model(trainer.best_model().cpu(), output, metadata)
        return output
    return None


def _reference_energy(paths: list[str], setting: dict | None = None):
    """(frames -> potential energies under the reference potential, for the closing rollout's energy drift,
    None), or (None, why there are none).

    A data file's stored config is data (docs/trust.md): its LAMMPS lines run only when they are the
    package's own (an unmodified built-in system) or when the user says so (``run_data_file_commands``); a
    ``system`` of the user's own runs instead of them. A calculator is never built from a data file."""
    from ..data import load_config, reference_config
    from ..evaluation.energy import lammps_energies, system_energies
    if (setting or {}).get("system"):
        cfg, name = load_config(setting["system"]), setting["system"]
        return (lambda trajectory: system_energies(trajectory, cfg, name, progress=False)[0]), None
    configs = [reference_config(path) for path in paths]
    if any(c.get("engine") == "ase" for c in configs):
        return None, ("energies not re-evaluated: the reference is an ASE calculator, which is built only from a "
                      "config you pass, never from a data file; use actionmd evaluate --system CONFIG, or "
                      "reference_energy: {system: CONFIG} in the training config")
    keys = ("units", "elements", "atom_style", "potential")
    if any([c.get(k) for k in keys] != [configs[0].get(k) for k in keys] for c in configs[1:]):
        return None, "energies not re-evaluated: the data files were made with different potentials"
    if not ((setting or {}).get("run_data_file_commands") or all(builtin_lines(c) for c in configs)):
        return None, ("energies not re-evaluated: the data files' LAMMPS lines are not a built-in system's, and "
                      "lines from a data file can run shell commands, so they are shown, not run: "
                      f"{configs[0].get('potential')}; set reference_energy: {{system: YOUR_CONFIG}} in the "
                      "training config, or {run_data_file_commands: true} if you trust these files")
    return (lambda trajectory: lammps_energies(trajectory, configs[0], progress=False)), None


def builtin_lines(cfg: dict) -> bool:
    """Whether everything of a stored config that reaches LAMMPS when energies are re-evaluated is the
    package's own: a built-in system's units, atom_style, elements and potential lines unchanged, numeric
    masses, and a structure that reads no file named by the data (a lattice, crystal or water box)."""
    from ..data import ConfigError, builtin_systems, load_config
    name = cfg.get("system")
    if not isinstance(name, str) or name not in builtin_systems():
        return False
    try:
        builtin = load_config(name)
    except ConfigError:
        return False
    keys = ("units", "atom_style", "elements", "potential")
    masses = cfg.get("masses") or {}
    structure = cfg.get("structure") or {}
    return ([cfg.get(k) for k in keys] == [builtin.get(k) for k in keys] and builtin.get("engine") == "lammps"
            and isinstance(masses, dict)
            and all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in masses.values())
            and isinstance(structure, dict) and not {"data_file", "file"} & set(structure))


def _start_weights(run_directory: str):
    """The best weights and metadata of an earlier run, to start from."""
    run = Path(run_directory)
    checkpoint = run / "checkpoint.pt"
    if not checkpoint.exists():
        raise TrainConfigError(f"start_from {run}: no checkpoint.pt; is this the 'output' of `actionmd train`?")
    state = load_run_file(checkpoint)
    best = run / "best_weights.pt"
    weights = load_run_file(best) if best.exists() else state["model"]
    return weights, state["metadata"]


def _check_start(start: dict, metadata: dict, source: str) -> None:
    """An earlier run's weights and scales only mean something for the same species, stride, cutoff and action
    architecture (the predictor may differ: a new predictor for a trained action)."""
    from ase.data import chemical_symbols
    if float(start["stride"]) != metadata["stride"]:
        raise TrainConfigError(f"start_from {source}: that run's stride is {start['stride']} fs, this config's "
                               f"{metadata['stride']} fs; an action is only valid at its own stride")
    if list(start["species"]) != list(metadata["species"]):
        names = [" ".join(chemical_symbols[z] for z in m["species"]) for m in (start, metadata)]
        raise TrainConfigError(f"start_from {source}: that run was trained on {names[0]}, this config's data holds "
                               f"{names[1]}; its weights and scales fit only its own species")
    if float(start["cutoff"]) != metadata["cutoff"]:
        raise TrainConfigError(f"start_from {source}: that run's cutoff is {start['cutoff']} Å, this config's "
                               f"{metadata['cutoff']} Å; set model.cutoff: {start['cutoff']}")
    differences = model_differences(*({"architecture": {k: m["architecture"].get(k) for k in ACTION_ARCHITECTURE}}
                                      for m in (start, metadata)))
    if differences:
        raise TrainConfigError(f"start_from {source}: its action has another architecture ({'; '.join(differences)}"
                               "); set this config's model keys as that run's")


def _load_matching(module: torch.nn.Module, weights: dict, source: str, require_action: bool) -> None:
    """Copy every tensor of ``weights`` whose name and shape fit ``module``; with require_action, the whole
    action must fit (it is kept frozen, so a mismatch would train a predictor for some other action)."""
    own = module.state_dict()
    fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    missing_action = [k for k in own if k.startswith("action.") and k not in fitting]
    if require_action and missing_action:
        raise TrainConfigError(f"start_from {source}: its action does not fit this config's model (no match for "
                               f"{missing_action[:3]}...); freeze_action needs the same action architecture")
    if not fitting:
        raise TrainConfigError(f"start_from {source}: none of its weights fit this config's model")
    module.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in fitting.items()}})


def export_from_run(run_directory: str | Path, output: str | Path, dtype: str | None = None,
                    data: list[str] | None = None) -> Path:
    """Rebuild the model of a training run from its checkpoint and export its best weights."""
    run_directory = Path(run_directory)
    checkpoint = run_directory / "checkpoint.pt"
    if not checkpoint.exists():
        raise TrainConfigError(f"{run_directory}: no checkpoint.pt; is this the 'output' of `actionmd train`?")
    state = load_run_file(checkpoint)
    metadata = dict(state["metadata"])
    history = state.get("history", {})
    if history.get("best_epoch"):  # as `actionmd train` records them in its own model.pt
        metadata["training"] = {**metadata.get("training", {}), "epochs": history["epoch"],
                                **{k: history[k] for k in RECORDED_HISTORY if k in history}}
    _record_training_range(metadata, data)
    module = _rebuild(metadata)
    best = run_directory / "best_weights.pt"
    module.load_state_dict(load_run_file(best) if best.exists() else state["model"])
    return _export_as(module, metadata, output, dtype)


def export_from_file(model_file: str | Path, output: str | Path, dtype: str | None = None,
                     data: list[str] | None = None) -> Path:
    """Re-export a learned model file with this version's code (same weights and metadata), e.g. to gain
    the forward_owned() that saves a LAMMPS fix most of its ghost atoms' work; checked to compute the same
    action and prediction as the original before anything is written."""
    from ..model_file import load_model
    original = load_model(model_file, device="cpu")
    metadata = original.metadata.to_json()
    if "architecture" not in metadata:
        raise TrainConfigError(f"{model_file}: no 'architecture' in its metadata, so it was not made by "
                               "`actionmd train`; re-export it with the code that built it")
    module = _rebuild(metadata)
    try:
        module.load_state_dict(original.module.state_dict())
    except RuntimeError as err:
        raise TrainConfigError(f"{model_file}: its weights do not fit this version's {metadata['architecture']} "
                               f"({str(err).splitlines()[0]}); re-export it with the code that built it") from None
    _check_same_model(original.module, module, metadata, str(model_file))
    _record_training_range(metadata, data)
    return _export_as(module, metadata, output, dtype)


def _record_training_range(metadata: dict, data: list[str] | None) -> None:
    """With ``data`` (the model's training files): record where it may be trusted (actionmd.extrapolation),
    e.g. for a model exported before the exporter did so."""
    if not data:
        return
    from ..data import load_dataset
    dataset = load_dataset(data)
    found = sorted({int(z) for s in dataset.segments for z in s.atomic_numbers})
    if found != sorted(metadata["species"]):
        raise TrainConfigError(f"--data holds species {found}, the model {sorted(metadata['species'])}: give the "
                               "files the model was trained on")
    metadata["training_range"] = training_range(dataset.segments, metadata["cutoff"])


def _rebuild(metadata: dict) -> torch.nn.Module:
    """An untrained module of the architecture a model's metadata records."""
    architecture = dict(metadata["architecture"])
    architecture.pop("name", None)
    module, _ = build_learned_model(metadata["species"], metadata["stride"], metadata["cutoff"],
                                    masses=metadata["masses"], predictor=metadata["has_predictor"],
                                    dtype=metadata["dtype"], **architecture)
    return module


def _check_same_model(original, rebuilt, metadata: dict, source: str) -> None:
    """Both modules give the same action, gradients and prediction on a jittered cubic cluster."""
    dtype = getattr(torch, metadata["dtype"])
    generator = torch.Generator().manual_seed(0)
    side = torch.arange(4, dtype=torch.float64) * 0.45 * metadata["cutoff"]
    grid = torch.stack(torch.meshgrid(side, side, side, indexing="ij"), dim=-1).reshape(-1, 3)
    positions = (grid + 0.05 * metadata["cutoff"] * torch.randn(grid.shape, generator=generator, dtype=torch.float64))
    masses = torch.tensor(metadata["masses"], dtype=torch.float64)
    types = torch.randint(len(masses), (len(grid),), generator=generator)
    momenta = torch.randn(grid.shape, generator=generator, dtype=torch.float64) * (masses[types] * 0.005).unsqueeze(1)
    neighbors = VerletList(metadata["cutoff"], skin=0.5)  # skin edges too, as engines pass them
    neighbors.update(positions.numpy(), np.eye(3) * float(grid.max() + metadata["cutoff"]), [False] * 3)
    edges, shifts = neighbors.edge_index, neighbors.edge_shifts(dtype)
    rebuilt = torch.jit.script(rebuilt)
    results = []
    for module in (original, rebuilt):
        q = positions.to(dtype).requires_grad_(True)
        p = momenta.to(dtype).requires_grad_(True)
        action = module(q, p, types, edges, shifts)
        outputs = [action.detach(), *torch.autograd.grad(action.sum(), [q, p])]
        if metadata["has_predictor"]:
            outputs += [t.detach() for t in module.predict(q, p, types, edges, shifts)]
        results.append(outputs)
    tolerance = 1e-4 if metadata["dtype"] == "float32" else 1e-9
    for name, a, b in zip(["action", "dS/dq", "dS/dp", "delta_q", "delta_p"], *results):
        error = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        if not error <= tolerance:
            raise TrainConfigError(f"{source}: this version of actionmd computes a different {name} from the same "
                                   f"weights (relative difference {error:.2e}); keep the original file")


def _export_as(module: torch.nn.Module, metadata: dict, output: str | Path, dtype: str | None) -> Path:
    if dtype is not None and dtype != metadata["dtype"]:
        module = module.to(getattr(torch, dtype))
        metadata["dtype"] = dtype
    export_model(module, output, metadata)
    print(json.dumps({"exported": str(output), "dtype": metadata["dtype"]}))
    return Path(output)
