"""Reading a run folder's checkpoint.pt and best_weights.pt as data (docs/trust.md).

A pickle can name any Python callable, so a run folder from someone else could run code when loaded in
full; here it is read weights-only: tensors, numbers, strings and plain containers (and the numeric numpy
scalars that older checkpoints' logs hold), anything else refused by name.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

_NUMPY = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
NUMPY_SCALARS = [_NUMPY.multiarray.scalar, np.dtype,  # numbers only: a float, integer or bool dtype
                 *{type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")}]
_ALLOWED_NAMES = {"numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype"}


class RunFileError(ValueError):
    """A run folder's file that cannot be read as weights: damaged, or holding more than data."""


def load_run_file(path: str | Path, map_location="cpu"):
    """The contents of a checkpoint or weights file, loaded weights-only; one line naming the file and the
    fix when it is damaged or holds objects whose loading could run code."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(NUMPY_SCALARS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = [name for name in (torch.serialization.get_unsafe_globals_in_checkpoint(path)
                                   if zipfile.is_zipfile(path) else []) if name not in _ALLOWED_NAMES]
        raise RunFileError(
            f"{path}: holds objects other than tensors and plain containers ({', '.join(found) or _first(err)}), "
            "which are not loaded since loading them could run code; actionmd train never writes them, so this "
            "file was made or changed elsewhere: use a run folder you trained yourself") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise RunFileError(
            f"{path}: damaged or truncated, not a readable torch file ({_first(err) or type(err).__name__}); "
            "restore it from a copy, or delete the run folder (or this file) and train again") from None


def _first(err: Exception) -> str:
    """The first line of an error, without torch's long advice."""
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
