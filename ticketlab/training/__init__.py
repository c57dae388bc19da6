"""Training: optimizers, schedules and the masked training loop. Knows nothing of lottery experiments."""

from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.early_stop import TrainResult
from ticketlab.training.evaluation import evaluate
from ticketlab.training.loop import train_model
from ticketlab.training.masked_step import apply_masks

__all__ = ["TrainResult", "TrainingInterrupted", "apply_masks", "evaluate", "train_model"]
