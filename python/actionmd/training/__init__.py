"""Training the action and the predictor from reference (q, p) -> (q', p') pairs."""
from ..lazy import lazy_attributes

# Loaded on first use (PEP 562): registering the train command must not import torch.
_WHERE = {"Batch": "batch", "Frame": "batch", "make_batch": "batch", "action_loss": "loss", "force_loss": "loss",
          "predictor_loss": "loss", "Trainer": "trainer", "TrainingOptions": "trainer",
          "split_by_trajectory": "trainer"}
__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes(__name__, _WHERE)
