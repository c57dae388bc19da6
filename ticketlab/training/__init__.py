"""Training: optimizers, schedules and the masked training loop. Knows nothing of lottery experiments."""

from ticketlab.training.loop import TrainResult, TrainingInterrupted, apply_masks, evaluate, train_model

__all__ = ["TrainResult", "TrainingInterrupted", "apply_masks", "evaluate", "train_model"]
