"""Training the action and the predictor from reference (q, p) -> (q', p') pairs."""
from .batch import Batch, Frame, make_batch
from .loss import action_loss, force_loss, predictor_loss
from .trainer import Trainer, TrainingOptions, split_by_trajectory

__all__ = ["Batch", "Frame", "make_batch", "action_loss", "force_loss", "predictor_loss", "Trainer",
           "TrainingOptions", "split_by_trajectory"]
