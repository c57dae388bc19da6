"""Settings that only some tasks read. A task refuses the settings it does not read instead of ignoring them,
so that a config never promises what its run did not do (`data.classes` on a language model, `data.vocab_size`
on images, `train.beam_size` on anything but translation, `rl.*` on anything but reinforcement learning).

Each task declares what it reads in its registry entry (`TaskInfo.reads`, and its own `TaskInfo.sections`);
this module only says how messages name what a setting applies to. Torch-free.
"""

from __future__ import annotations

import dataclasses

from ticketlab.config import DataConfig, ExperimentConfig, config_from_dict
from ticketlab.errors import ConfigError
from ticketlab.tasks import TASKS, task_info, task_label

# dotted field of a core section that only some tasks read -> what it applies to, in messages. A field not listed
# (and not in a task's own section) is read by every task (or checked by the model that reads it).
OPTIONAL_SETTINGS: dict[str, str] = {
    "data.classes": "classification",
    "data.image_size": "image data",
    "data.channels": "image data",
    "data.augment": "image data",
    "data.validation_size": "classification",
    "data.train_size": "classification, language and translation",
    "data.sequence_length": "language",
    "data.source": "translation",
    "data.target": "translation",
    "data.vocab_size": "translation",
    "data.eval_size": "translation",
    "train.label_smoothing": "translation",
    "train.beam_size": "translation",
    "model.embedding_dim": "language",
    "model.tie_weights": "language and translation",
    "model.heads": "translation",
    "model.ffn_dim": "translation",
    "model.weights": "classification",
    "model.pretrained_dir": "classification",
}


def task_settings() -> dict[str, tuple[str, frozenset[str]]]:
    """dotted field -> (what it applies to, the tasks that read it), for the optional core settings and every
    field of the registered tasks' own sections (read now: tasks register at run time)."""
    table = {dotted: (owner, frozenset(name for name, info in TASKS.items() if dotted in info.reads))
             for dotted, owner in OPTIONAL_SETTINGS.items()}
    for name, info in TASKS.items():
        for key, section in info.sections:
            table.update({f"{key}.{field.name}": (task_label(name), frozenset({name}))
                          for field in dataclasses.fields(section)})
    return table


def __getattr__(name: str):
    if name == "TASK_SETTINGS":  # the table as a value, for readers of the former constant
        return task_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _refuse(section: str, values, task: str, what: str, table: dict[str, tuple[str, frozenset[str]]]) -> None:
    default = getattr(ExperimentConfig(), section)
    for dotted, (owner, readers) in table.items():
        prefix, name = dotted.split(".", 1)
        if prefix != section or task in readers:
            continue
        value, unset = getattr(values, name), getattr(default, name)
        if value != unset:
            leave = "leave it unset" if unset is None or unset is False else f"leave it at its default {unset!r}"
            raise ConfigError(f"{dotted} {value!r} applies to {owner} only, not to {what}: the {task} task does not "
                              f"use it; {leave}")


def refuse_foreign_settings(config: DataConfig, reader: str, what: str) -> None:
    """ConfigError (one line, naming the field and its value) for a set data field that task `reader` does not
    read; `what` names the data in the message."""
    _refuse("data", config, reader, what, task_settings())


def refuse_other_task_settings(config: ExperimentConfig) -> None:
    """ConfigError (one line, naming the field, its value and the task) for any setting of `config` changed from
    its default that its task does not read (see `task_settings`); called before any data is loaded or trained."""
    what = f"{task_label(config.task)} ({config.data.name})"
    table = task_settings()
    for section in ("data", "model", "train", *config.task_sections()):
        _refuse(section, getattr(config, section), config.task, what, table)


def without_task_sections(config: ExperimentConfig) -> ExperimentConfig:
    """`config` with its own task's sections back at their defaults: the start of a config for another task made
    from it (`transfer` from an `mlm` run to a `glue` target leaves `mlm.*` behind, which glue would refuse)."""
    values = config.to_dict()
    for key, _ in task_info(config.task).sections:
        values.pop(key, None)
    return config_from_dict(values)
