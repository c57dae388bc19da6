"""Task registry: each task (classification, language modelling, ...) is a package of its own.

This module is torch-free and imports no task's code: it names each task with the datasets and models it
accepts, its own config sections and the optional settings it reads, so configs can be validated (and
`ticketlab --help` drawn) without loading torch. `load_task(name)` imports the task's module and returns its
`TASK` object (a `ticketlab.tasks.base.Task`). The config knows no task: this registry adds the task sections to
the config (`config.rl`) and the task / dataset / model name checks to its validation.

Adding a task is one package: its torch-free `__init__` calls `register_task(name, TaskInfo(module=...))` naming
the module that defines TASK (import the package before building its configs); the built-in tasks are
registered below, since their packages load torch on import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ticketlab.config.checks import check_choice
from ticketlab.config.extensions import EXPERIMENT_DEFAULTS, TASK_SECTIONS, register_check, register_section
from ticketlab.errors import ConfigError
from ticketlab.registry import Registry
from ticketlab.tasks.hf.settings import GlueConfig, MLMConfig
from ticketlab.tasks.rl.settings import RLConfig

_REQUIRED = object()


@dataclass(frozen=True)
class TaskInfo:
    """What the config layer knows of a task without importing it."""

    module: str  # the module that defines TASK
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    # the task's own config sections, as (top-level key in config.json, frozen dataclass with validate()) pairs;
    # other tasks refuse a changed value in them
    sections: tuple[tuple[str, type], ...] = ()
    # the settings of the core sections that only some tasks read (ticketlab.tasks.data_settings) which this one
    # reads; it refuses a changed value of the others
    reads: frozenset[str] = frozenset()
    label: str = ""  # what messages call its work, e.g. "a language model" (empty: the task's name)
    # a Task built in memory (`ticketlab.tasks.simple.simple_task`): `load_task` returns it instead of importing
    # `module`
    task: Any = None
    # the file or module a user named with `--task-module` (`import_task_module`): worker processes import it
    # again to register the task there too
    source: str = ""


class TaskRegistry(Registry[TaskInfo]):
    """The task table: registering a task registers its config sections too. It also reads and writes like a
    dict (`TASKS[name] = info`, `del TASKS[name]`), which tests that patch the table rely on."""

    def register(self, name: str, entry: TaskInfo, *, replace: bool = False) -> TaskInfo:
        previous = self._entries.get(name)
        super().register(name, entry, replace=replace)
        for key, _ in previous.sections if previous is not None else ():
            TASK_SECTIONS.unregister(key)
        for key, section in entry.sections:
            register_section(key, section, replace=replace)
        return entry

    def unregister(self, name: str) -> None:
        info = self._entries.get(name)
        for key, _ in info.sections if info is not None else ():
            TASK_SECTIONS.unregister(key)
        super().unregister(name)

    def get(self, name: str, default: Any = _REQUIRED) -> TaskInfo:
        if default is not _REQUIRED and name not in self:
            return default
        return super().get(name)

    def values(self) -> list[TaskInfo]:
        return [info for _, info in self.items()]

    def __getitem__(self, name: str) -> TaskInfo:
        return self.get(name)

    def __setitem__(self, name: str, info: TaskInfo) -> None:
        self.register(name, info, replace=True)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)


TASKS = TaskRegistry("task")


def register_task(name: str, info: TaskInfo, *, replace: bool = False) -> TaskInfo:
    """Add task `name` (and its config sections) and return its entry; `replace` swaps a registered one."""
    return TASKS.register(name, info, replace=replace)


def unregister_task(name: str) -> None:
    """Remove task `name` and its config sections (a test's toy task)."""
    TASKS.unregister(name)


def task_info(name: str) -> TaskInfo:
    """The registry entry of task `name`; ConfigError listing the known tasks otherwise."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)} (a task of your own file: "
                          "ticketlab --task-module FILE COMMAND ...)")
    return TASKS.get(name)


def task_of_dataset(dataset: str) -> str | None:
    """The task whose datasets include `dataset` (None if no task has it)."""
    return next((name for name, info in TASKS.items() if dataset in info.datasets), None)


def task_label(name: str) -> str:
    """What messages call the work of task `name` ("a language model", "reinforcement learning")."""
    info = TASKS.get(name, None)
    return info.label or name if info is not None else name


def model_names() -> tuple[str, ...]:
    """Every registered task's models, in order of registration (read now: tasks register at run time)."""
    return tuple(dict.fromkeys(name for info in TASKS.values() for name in info.models))


def dataset_names() -> tuple[str, ...]:
    """Every registered task's datasets, in order of registration."""
    return tuple(dict.fromkeys(name for info in TASKS.values() for name in info.datasets))


def __getattr__(name: str):
    if name == "MODEL_NAMES":  # what ticketlab.config exported once, read live
        return model_names()
    if name == "DATASET_NAMES":
        return dataset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_task(name: str):
    """Import task `name` and return its TASK object (the one registered with it, for a task built in memory)."""
    info = task_info(name)
    return info.task if info.task is not None else importlib.import_module(info.module).TASK


def task_sources() -> tuple[str, ...]:
    """The user task files and modules imported so far (`import_task_module`), for worker processes to import."""
    return tuple(dict.fromkeys(info.source for info in TASKS.values() if info.source))


def check_task_names(config) -> None:
    """The experiment config's model.name and data.name are some task's ('custom:...' always passes), and its
    task exists and has them; ConfigError naming the value and what is allowed."""
    check_choice("model.name", config.model.name, model_names(), allow_custom=True)
    check_choice("data.name", config.data.name, dataset_names(), allow_custom=True)
    info = task_info(config.task)
    if not config.data.name.startswith("custom:") and config.data.name not in info.datasets:
        owner = task_of_dataset(config.data.name)
        hint = f" (data.name {config.data.name!r} belongs to task {owner!r}: add --task {owner})" if owner else ""
        raise ConfigError(f"task {config.task!r} does not have data.name {config.data.name!r}; "
                          f"allowed: {', '.join(info.datasets)}{hint}")
    if not config.model.name.startswith("custom:") and config.model.name not in info.models:
        raise ConfigError(f"task {config.task!r} does not have model.name {config.model.name!r}; "
                          f"allowed: {', '.join(info.models)}")


register_check("task names", check_task_names)
EXPERIMENT_DEFAULTS.register("task", "classification")  # what a config that names no task trains
register_task("classification", TaskInfo(
    module="ticketlab.tasks.classification",
    datasets=("mnist1d", "fashion_mnist", "mnist", "cifar10", "cifar100", "svhn", "imagenet", "image_folder"),
    models=("mlp", "lenet300_100", "conv2", "conv4", "conv6", "vgg11", "vgg13", "vgg16", "vgg19",
            "resnet20", "resnet32", "resnet56", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "hf_image"),
    reads=frozenset({"data.classes", "data.image_size", "data.channels", "data.augment", "data.validation_size",
                     "data.train_size", "model.weights", "model.pretrained_dir"}),
))
register_task("language", TaskInfo(
    module="ticketlab.tasks.language",
    datasets=("wikitext2", "ptb", "tiny_shakespeare"),
    models=("lstm",),
    reads=frozenset({"data.train_size", "data.sequence_length", "model.embedding_dim", "model.tie_weights"}),
    label="a language model",
))
register_task("translation", TaskInfo(
    module="ticketlab.tasks.translation",
    datasets=("multi30k", "parallel"),
    models=("transformer",),
    reads=frozenset({"data.train_size", "data.source", "data.target", "data.vocab_size", "data.eval_size",
                     "train.label_smoothing", "train.beam_size", "model.tie_weights", "model.heads",
                     "model.ffn_dim"}),
))
register_task("rl", TaskInfo(
    module="ticketlab.tasks.rl.task",
    datasets=("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "Pong", "Breakout"),
    models=("mlp", "nature_cnn"),
    sections=(("rl", RLConfig),),
    label="reinforcement learning",
))
register_task("glue", TaskInfo(
    module="ticketlab.tasks.hf.glue",
    datasets=("sst2", "mrpc", "cola", "rte", "stsb", "qnli", "qqp"),
    models=("pretrained",),
    sections=(("glue", GlueConfig),),
    reads=frozenset({"data.validation_size", "data.train_size"}),
    label="a pre-trained transformer on GLUE",
))
register_task("mlm", TaskInfo(
    module="ticketlab.tasks.hf.mlm",
    datasets=("text",),
    models=("pretrained",),
    sections=(("mlm", MLMConfig),),
    reads=frozenset({"data.train_size"}),
    label="a pre-trained masked language model",
))
