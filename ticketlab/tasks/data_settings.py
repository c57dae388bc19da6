"""Settings that only some tasks read. A task refuses the settings it does not read instead of ignoring them,
so that a config never promises what its run did not do (`data.classes` on a language model, `data.vocab_size`
on images, `train.beam_size` on anything but translation, `rl.*` on anything but reinforcement learning)."""

from __future__ import annotations

import dataclasses

from ticketlab.config import DataConfig, ExperimentConfig, RLConfig
from ticketlab.errors import ConfigError

# dotted field -> (what it applies to, in messages; the tasks that read it). A field not listed is read by every
# task (or checked by the model that reads it). The tasks declare here which of these fields they read.
TASK_SETTINGS: dict[str, tuple[str, frozenset[str]]] = {
    "data.classes": ("classification", frozenset({"classification"})),
    "data.image_size": ("image data", frozenset({"classification"})),
    "data.channels": ("image data", frozenset({"classification"})),
    "data.augment": ("image data", frozenset({"classification"})),
    "data.validation_size": ("classification", frozenset({"classification"})),
    "data.train_size": ("classification, language and translation", frozenset({"classification", "language",
                                                                              "translation"})),
    "data.sequence_length": ("language", frozenset({"language"})),
    "data.source": ("translation", frozenset({"translation"})),
    "data.target": ("translation", frozenset({"translation"})),
    "data.vocab_size": ("translation", frozenset({"translation"})),
    "data.eval_size": ("translation", frozenset({"translation"})),
    "train.label_smoothing": ("translation", frozenset({"translation"})),
    "train.beam_size": ("translation", frozenset({"translation"})),
    "model.embedding_dim": ("language", frozenset({"language"})),
    "model.tie_weights": ("language and translation", frozenset({"language", "translation"})),
    "model.heads": ("translation", frozenset({"translation"})),
    "model.ffn_dim": ("translation", frozenset({"translation"})),
    **{f"rl.{field.name}": ("reinforcement learning", frozenset({"rl"}))
       for field in dataclasses.fields(RLConfig)},
}

# how messages name the data of each task, e.g. "a language model (ptb)"
_TASK_DATA = {"classification": "classification ({})", "language": "a language model ({})",
              "translation": "translation ({})", "rl": "reinforcement learning ({})"}


def _refuse(section: str, values, task: str, what: str) -> None:
    default = getattr(ExperimentConfig(), section)
    for dotted, (owner, readers) in TASK_SETTINGS.items():
        prefix, name = dotted.split(".", 1)
        if prefix != section or task in readers:
            continue
        value, unset = getattr(values, name), getattr(default, name)
        if value != unset:
            leave = "leave it unset" if unset in (None, False) else f"leave it at its default {unset!r}"
            raise ConfigError(f"{dotted} {value!r} applies to {owner} only, not to {what}: the {task} task does not "
                              f"use it; {leave}")


def refuse_foreign_settings(config: DataConfig, reader: str, what: str) -> None:
    """ConfigError (one line, naming the field and its value) for a set data field that task `reader` does not
    read; `what` names the data in the message."""
    _refuse("data", config, reader, what)


def refuse_other_task_settings(config: ExperimentConfig) -> None:
    """ConfigError (one line, naming the field, its value and the task) for any setting of `config` changed from
    its default that its task does not read (see TASK_SETTINGS); called before any data is loaded or trained."""
    what = _TASK_DATA.get(config.task, config.task + " ({})").format(config.data.name)
    for section in ("data", "model", "train", "rl"):
        _refuse(section, getattr(config, section), config.task, what)
