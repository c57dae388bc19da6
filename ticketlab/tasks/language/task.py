"""The language-modelling task: an LSTM language model on word-level (perplexity) or character-level
(bits per character) corpora, as the lottery engine sees it."""

from __future__ import annotations

from ticketlab.config import ExperimentConfig
from ticketlab.tasks.base import Task
from ticketlab.tasks.language.data import load_language_data
from ticketlab.tasks.language.evaluate import evaluate
from ticketlab.tasks.language.model import build_language_model, initialize_language_model
from ticketlab.tasks.language.streams import steps_per_epoch
from ticketlab.tasks.language.train import train_language_model
from ticketlab.tasks.metrics import METRICS, Metric

CHARACTER_DATASETS = ("tiny_shakespeare",)


def language_metric(config: ExperimentConfig) -> Metric:
    """Test perplexity (log axis) for word-level corpora, test bits per character for character-level ones."""
    if config.data.name in CHARACTER_DATASETS:
        return METRICS["bits_per_char"]  # Metric("bits_per_char", higher_is_better=False, ...)
    return METRICS["perplexity"]  # Metric("perplexity", higher_is_better=False, log_scale=True, ...)


TASK = Task(
    name="language",
    load_data=load_language_data,
    build_model=lambda config, data: build_language_model(config, data.vocab_size),
    initialize=lambda model, config, seed: initialize_language_model(model, config.model.init, seed),
    train=train_language_model,
    evaluate=evaluate,
    metric=language_metric,
    steps_per_epoch=steps_per_epoch,
    stackable=lambda model, device, population: False,  # one job at a time (no stacked LSTM populations)
    per_step_hook=lambda config, model: None,  # the trainer seeds its own dropout from (data_seed, step)
)
