"""Training the action and the predictor from reference (q, p) -> (q', p') pairs."""
import importlib

# Loaded on first use (PEP 562): registering the train command must not import torch.
_WHERE = {"Batch": "batch", "Frame": "batch", "make_batch": "batch", "action_loss": "loss", "force_loss": "loss",
          "predictor_loss": "loss", "Trainer": "trainer", "TrainingOptions": "trainer",
          "split_by_trajectory": "trainer"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
