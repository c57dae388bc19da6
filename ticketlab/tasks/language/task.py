"""The language-modelling task: an LSTM language model on word-level (perplexity) or character-level
(bits per character) corpora, as the lottery engine sees it."""

from __future__ import annotations

from ticketlab.config import ExperimentConfig
from ticketlab.tasks.base import Metric, Task
from ticketlab.tasks.language.data import load_language_data
from ticketlab.tasks.language.evaluate import evaluate
from ticketlab.tasks.language.model import build_language_model, initialize_language_model
from ticketlab.tasks.language.streams import steps_per_epoch
from ticketlab.tasks.language.train import train_language_model

CHARACTER_DATASETS = ("tiny_shakespeare",)


def language_metric(config: ExperimentConfig) -> Metric:
    """Test perplexity (log axis) for word-level corpora, test bits per character for character-level ones."""
    if config.data.name in CHARACTER_DATASETS:
        return Metric("bits_per_char", higher_is_better=False, label="test bits per character")
    return Metric("perplexity", higher_is_better=False, label="test perplexity", log_scale=True)


TASK = Task(
    name="language",
    load_data=load_language_data,
    build_model=lambda config, data: build_language_model(config, data.vocab_size),
    initialize=lambda model, config, seed: initialize_language_model(model, config.model.init, seed),
    train=train_language_model,
    evaluate=evaluate,
    metric=language_metric,
    steps_per_epoch=steps_per_epoch,
    stackable=lambda model, device, population: False,
    per_step_hook=None,
)
