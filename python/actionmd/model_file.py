"""The actionmd model file, format_version 1: a TorchScript module plus ``actionmd.json`` metadata.

The same contract is implemented by the Python runtime and the LAMMPS fix; docs/model-format.md is the
reference. Metadata are validated when a model is exported and again when it is loaded, and every
rejection names the problem and the fix.
"""
from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

FORMAT = "actionmd"
FORMAT_VERSION = 1
METADATA_FILE = "actionmd.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# key -> (python types accepted, description used in error messages)
_REQUIRED = {
    "format": (str, 'the string "actionmd"'),
    "format_version": (int, "an integer"),
    "species": (list, "a list of atomic numbers (index = type id)"),
    "masses": (list, "a list of masses in u, one per species"),
    "stride": ((int, float), "the stride in fs"),
    "cutoff": ((int, float), "the edge cutoff in Å"),
    "interaction_range": ((int, float), "the interaction range in Å"),
    "dtype": (str, '"float32" or "float64"'),
    "has_predictor": (bool, "true or false"),
    "time_reversible": (bool, "true or false"),
}
_FORWARD_ARGS = ["positions", "momenta", "types", "edge_index", "edge_shifts"]


# What a model's code may do (docs/trust.md): tensor maths. Operators outside these namespaces (custom ops,
# distributed, profiler, debugging) and those that touch files or processes are refused at load time.
ALLOWED_NAMESPACES = ("aten", "prim")
DENIED_OPERATORS = ("aten::from_file", "aten::save", "prim::CallFunction", "prim::CallMethod", "prim::PythonOp")
DENIED_WORDS = ("file", "save", "load", "pickle", "system", "exec", "open")  # any operator whose name has one
_OPERATOR = re.compile(r"[=\n] *([A-Za-z_]\w*)::(\w+)")  # a node's kind: after "= " or opening its line
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SETSTATE = re.compile(rb"\bdef\s+__setstate__\b")


LEARNED_ARCHITECTURE = "actionmd.models.ActionNet"  # the architecture.name of files made by actionmd train


class ModelFileError(ValueError):
    """A model file, or metadata for one, that does not follow the actionmd contract."""


@dataclass(frozen=True)
class Metadata:
    """Validated metadata of an actionmd model (units: Å, fs, u)."""

    species: tuple[int, ...]
    masses: tuple[float, ...]
    stride: float
    cutoff: float
    interaction_range: float
    dtype: str
    has_predictor: bool
    time_reversible: bool
    extra: dict

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def translation_invariant(self) -> bool:
        """Whether S depends on relative positions only, so that an engine may shift the origin (and move
        atoms by periodic cell vectors) before the model sees them: the optional key, else true for the
        learned ActionNet (made by actionmd train) and false otherwise (e.g. oscillators on fixed sites)."""
        default = (self.extra.get("architecture") or {}).get("name") == LEARNED_ARCHITECTURE
        return bool(self.extra.get("translation_invariant", default))

    def to_json(self) -> dict:
        data = dict(self.extra)
        data.update(
            format=FORMAT, format_version=FORMAT_VERSION, species=list(self.species),
            masses=list(self.masses), stride=self.stride, cutoff=self.cutoff,
            interaction_range=self.interaction_range, dtype=self.dtype,
            has_predictor=self.has_predictor, time_reversible=self.time_reversible,
        )
        return data


def _is_instance(value, types) -> bool:
    """isinstance, except that a bool is not accepted as a number (JSON true is not 1)."""
    types = types if isinstance(types, tuple) else (types,)
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def parse_metadata(data: dict, source: str = "metadata") -> Metadata:
    """Check every required key's presence, type and value; return the typed metadata."""
    if not isinstance(data, dict):
        raise ModelFileError(f"{source}: actionmd.json must hold a JSON object, got {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ModelFileError(f"{source}: missing metadata key(s) {missing}; export the model with "
                             "actionmd.model_file.export_model, which writes all of them")
    for key, (types, meaning) in _REQUIRED.items():
        value = data[key]
        if not _is_instance(value, types):
            raise ModelFileError(f"{source}: metadata key '{key}' must be {meaning}, got {value!r}")
    if data["format"] != FORMAT:
        raise ModelFileError(f"{source}: metadata 'format' is {data['format']!r}, expected {FORMAT!r}")
    if data["format_version"] > FORMAT_VERSION:
        raise ModelFileError(f"{source}: format_version {data['format_version']} is newer than this actionmd "
                             f"understands ({FORMAT_VERSION}); upgrade actionmd to load it")
    if data["format_version"] < 1:
        raise ModelFileError(f"{source}: format_version must be >= 1, got {data['format_version']}")
    species, masses = data["species"], data["masses"]
    if not species or not all(_is_instance(z, int) and 1 <= z <= 118 for z in species):
        raise ModelFileError(f"{source}: 'species' must be a non-empty list of atomic numbers 1..118, got {species!r}")
    if len(set(species)) != len(species):
        raise ModelFileError(f"{source}: 'species' lists an element twice: {species!r}")
    if len(masses) != len(species) or not all(
            _is_instance(m, (int, float)) and m > 0 and math.isfinite(m) for m in masses):
        raise ModelFileError(f"{source}: 'masses' must hold one positive mass (u) per species "
                             f"({len(species)}), got {masses!r}")
    for key in ("stride", "cutoff", "interaction_range"):
        value = data[key]
        if not math.isfinite(value) or value < 0 or (key == "stride" and value == 0):
            raise ModelFileError(f"{source}: '{key}' must be a finite {'positive' if key == 'stride' else 'non-negative'}"
                                 f" number, got {value!r}")
    if data["dtype"] not in DTYPES:
        raise ModelFileError(f"{source}: 'dtype' must be one of {sorted(DTYPES)}, got {data['dtype']!r}")
    _check_training_range(data.get("training_range"), species, source)
    if not isinstance(data.get("translation_invariant", False), bool):
        raise ModelFileError(f"{source}: 'translation_invariant' must be true or false, got "
                             f"{data['translation_invariant']!r}")
    extra = {key: value for key, value in data.items() if key not in _REQUIRED}
    return Metadata(
        species=tuple(species), masses=tuple(float(m) for m in masses), stride=float(data["stride"]),
        cutoff=float(data["cutoff"]), interaction_range=float(data["interaction_range"]), dtype=data["dtype"],
        has_predictor=data["has_predictor"], time_reversible=data["time_reversible"], extra=extra,
    )


def _check_training_range(value, species, source: str) -> None:
    """Optional: {"closest_pair": {"Z1-Z2": distance in Å > 0, ...}} (actionmd.extrapolation)."""
    if value is None:
        return
    closest = value.get("closest_pair", {}) if isinstance(value, dict) else None
    good = isinstance(closest, dict) and all(
        isinstance(k, str) and len(k.split("-")) == 2 and all(p.isdigit() for p in k.split("-"))
        and _is_instance(v, (int, float)) and math.isfinite(v) and v > 0 for k, v in closest.items())
    if not good:
        raise ModelFileError(f"{source}: 'training_range' must be {{\"closest_pair\": {{\"Z1-Z2\": distance in Å > 0, "
                             f"...}}}}, got {value!r}")
    foreign = sorted(k for k in closest if any(int(z) not in species for z in k.split("-")))
    if foreign:
        raise ModelFileError(f"{source}: 'training_range' names species pairs {foreign} that the model (atomic "
                             f"numbers {list(species)}) does not have: was it exported with --data of another "
                             "system? Export again with the model's own training data")


def _check_method(module: torch.jit.ScriptModule, name: str, returns: str, source: str, owned: bool = False) -> None:
    """The method takes the five contract tensors (and, for the *_owned variants, an int n_owned)."""
    schema = getattr(module, name).schema
    args = [a for a in schema.arguments if a.name != "self"]
    names = [a.name for a in args]
    wanted = ["Tensor"] * len(_FORWARD_ARGS) + (["int"] if owned else [])
    if [str(a.type) for a in args] != wanted:
        raise ModelFileError(f"{source}: {name}() must take five tensors ({', '.join(_FORWARD_ARGS)})"
                             f"{' and an int n_owned' if owned else ''}, "
                             f"found ({', '.join(f'{a.name}: {a.type}' for a in args)})")
    got = str(schema.returns[0].type) if len(schema.returns) == 1 else str([r.type for r in schema.returns])
    if got != returns:
        raise ModelFileError(f"{source}: {name}() must return {returns}, found {got} (arguments: {names})")


def check_module(module: torch.jit.ScriptModule, meta: Metadata, source: str) -> None:
    """The module's methods match the contract and agree with the metadata."""
    if not isinstance(module, torch.jit.ScriptModule):
        raise ModelFileError(f"{source}: the model must be a TorchScript module (torch.jit.script), "
                             f"got {type(module).__name__}")
    _check_method(module, "forward", "Tensor", source)
    has_predict = hasattr(module, "predict")
    if has_predict:
        _check_method(module, "predict", "Tuple[Tensor, Tensor]", source)
    if hasattr(module, "forward_owned"):
        _check_method(module, "forward_owned", "Tensor", source, owned=True)
    if hasattr(module, "predict_owned"):
        if not has_predict:
            raise ModelFileError(f"{source}: the module has predict_owned() but no predict(); export both")
        _check_method(module, "predict_owned", "Tuple[Tensor, Tensor]", source, owned=True)
    if has_predict != meta.has_predictor:
        raise ModelFileError(f"{source}: metadata has_predictor={meta.has_predictor} but the module "
                             f"{'has' if has_predict else 'has no'} exported predict() method")
    dtypes = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if dtypes and dtypes != {meta.torch_dtype}:
        raise ModelFileError(f"{source}: metadata dtype is {meta.dtype} but the module holds "
                             f"{sorted(str(d) for d in dtypes)} tensors; convert it with .to(torch.{meta.dtype})")


def check_code_before_loading(path: Path) -> None:
    """TorchScript runs a class's __setstate__ while it loads the file, before any check could see it: an
    archive whose code defines one is refused unread (actionmd's exporter never writes one)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if "/code/" in name and name.endswith(".py") and _SETSTATE.search(archive.read(name)):
                raise ModelFileError(f"{path}: its code defines __setstate__, which TorchScript would run while "
                                     "loading it; actionmd model files never do, so it is not loaded "
                                     "(docs/trust.md)")


def check_operations(module: torch.jit.ScriptModule, source: str) -> None:
    """Every operator that the contract's methods can reach (their graphs with every call inlined) is tensor
    maths: namespaces aten and prim only, and none that reads or writes files or runs processes
    (e.g. torch.from_file(..., shared=True) creates files). Scanning the graphs' text takes ~10 ms."""
    for name in module._c._method_names():
        graph = module._c._get_method(name).graph.copy()
        torch._C._jit_pass_inline(graph)
        for namespace, operator in _OPERATOR.findall(_STRING.sub('""', str(graph))):
            kind = f"{namespace}::{operator}"
            if (namespace not in ALLOWED_NAMESPACES or kind in DENIED_OPERATORS
                    or any(word in operator.lower() for word in DENIED_WORDS)):
                raise ModelFileError(f"{source}: {name}() uses the operator {kind}, which an action model does "
                                     "not need (only tensor maths of namespaces aten and prim, nothing that "
                                     "touches files or processes), so it is not run (docs/trust.md)")


def export_model(module: torch.nn.Module, path: str | Path, metadata: dict) -> Metadata:
    """Script (if needed), validate against ``metadata``, and save one self-describing model file."""
    meta = parse_metadata({"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}, "export")
    _check_output(Path(path))
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    check_module(scripted, meta, "export")
    # written beside the target, then renamed: an interrupted export never leaves half a model file, and
    # re-exporting a file in place (`actionmd export m.pt -o m.pt`) cannot lose it
    partial = Path(f"{path}.partial")
    try:
        torch.jit.save(scripted, str(partial), _extra_files={METADATA_FILE: json.dumps(meta.to_json(), indent=1)})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return meta


def _check_output(path: Path) -> None:
    """Replace only a model file (re-export in place), never a data file or a folder; make the parents."""
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; give the model file's name, e.g. {path / 'model.pt'}")
    if path.exists() and path.stat().st_size > 0:
        try:
            _read_extra(path)
        except ModelFileError:
            raise ModelFileError(f"{path} exists and is not an actionmd model file, so it is not overwritten; "
                                 "choose another output name or move the file away") from None
    path.parent.mkdir(parents=True, exist_ok=True)


def read_metadata(path: str | Path) -> Metadata:
    """Metadata of a model file, without deserialising the module."""
    return _read_extra(Path(path))


def _read_extra(path: Path) -> Metadata:
    if path.is_dir():
        hint = (f"; a training run folder: export it with `actionmd export {path} -o model.pt`"
                if (path / "checkpoint.pt").exists() or (path / "best_weights.pt").exists() else "")
        raise ModelFileError(f"{path} is a folder, not a model file{hint}")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a TorchScript archive (expected a file written by torch.jit.save, "
                             "e.g. by `actionmd export`)")
    with zipfile.ZipFile(path) as archive:
        entries = [n for n in archive.namelist() if n.endswith("/extra/" + METADATA_FILE)]
        if not entries:
            hint = ("a training checkpoint, not a model: export the run with `actionmd export RUN_DIR -o "
                    "model.pt`" if path.name in ("checkpoint.pt", "best_weights.pt") else
                    f"a TorchScript archive without actionmd metadata ({METADATA_FILE}); export it with "
                    "`actionmd export` or actionmd.model_file.export_model")
            raise ModelFileError(f"{path}: {hint}")
        raw = archive.read(entries[0])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: {METADATA_FILE} is not valid JSON ({err})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: {METADATA_FILE} nests its values too deeply to read (metadata is a flat "
                             "object of numbers, strings and short lists); export the model again") from None
    return parse_metadata(data, str(path))


@dataclass
class LoadedModel:
    """A loaded, validated model: the TorchScript module, its metadata, the device it lives on."""

    module: torch.jit.ScriptModule
    metadata: Metadata
    path: str
    device: torch.device

    @property
    def dtype(self) -> torch.dtype:
        return self.metadata.torch_dtype


def load_model(path: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Load and validate a model file; ``device`` defaults to cuda when available."""
    path = Path(path)
    meta = _read_extra(path)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: torch finds no CUDA device here (torch.cuda.is_available() is "
                         "False: no GPU, or a CPU-only torch build); use device='cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    check_code_before_loading(path)
    try:
        module = torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ModelFileError(f"{path}: TorchScript could not load the module: {err}") from None
    check_module(module, meta, str(path))
    check_operations(module, str(path))
    module.eval()
    # Integrators differentiate S by positions and momenta only; with the weights frozen, TorchScript's
    # differentiable graphs skip the weight gradients that every evaluation would otherwise compute.
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return LoadedModel(module=module, metadata=meta, path=str(path), device=device)
