"""Your own task in one file: a model, data, a loss and an evaluation as plain functions, run by every variant.

`simple_task(...)` fills in the `Task` interface from them and registers the task, so `find_tickets`,
`rewind_sweep`, `stability_analysis`, `transfer_tickets`, `export`, `cost` and the report treat it as they treat a
built-in task. Its training is the engine's masked loop (`ticketlab.training.engine.train_masked`) with the
user's loss: exact masks (pruned weights stay 0 through momentum, Adam and weight decay), the config's optimizer
and learning-rate schedule, rewind snapshots, early stopping at the lowest validation loss, checkpoints and exact
resume. Batches are drawn the way the classifier draws them (`ticketlab.training.batches.batch_indices`: epoch e
is a permutation seeded by (data seed, e)), so a resumed or rewound run sees the same batches.

Not provided: stacked populations (the stacked engine computes a classifier's cross-entropy; a user task trains
one job at a time per process, `workers` processes in parallel) and data-parallel torchrun.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.models import initialize
from ticketlab.presets import DEFAULT_PRESET, preset
from ticketlab.pruning import prunable_weights
from ticketlab.tasks import TASKS, TaskInfo
from ticketlab.tasks.base import Task
from ticketlab.tasks.metrics import Metric, register_metric
from ticketlab.training.batches import batch_indices, iterations_per_epoch
from ticketlab.training.early_stop import EarlyStop, TrainResult, record_result
from ticketlab.training.engine import json_metadata, train_masked

SPLITS = ("train", "val", "test")
DIRECTIONS = {"max": True, "min": False}


@dataclass(frozen=True)
class Splits:
    """A dataset in memory: each split a tuple of tensors with the examples along dim 0, inputs first ((x, y))."""

    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    num_classes: int = 0  # classes of a classifier's labels (export metadata only); 0: not a classifier

    def to(self, device) -> "Splits":
        moved = {split: tuple(tensor.to(device) for tensor in getattr(self, split)) for split in SPLITS}
        return Splits(**moved, num_classes=self.num_classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input (the first tensor of an example)."""
        return tuple(self.train[0].shape[1:])

    @property
    def device(self) -> torch.device:
        return self.train[0].device


@dataclass(frozen=True)
class SimpleTask:
    """A registered user task: its name, the `Task` the engine runs, and `config(...)` to build its experiments."""

    name: str
    task: Task
    datasets: tuple[str, ...]
    model_name: str

    def config(self, dataset: str | None = None, **changes: Any) -> ExperimentConfig:
        """An ExperimentConfig of this task on `dataset` (default: the first), with dotted `changes` applied
        (`config(trials=2, **{"train.lr": 0.01})`, as `ExperimentConfig.replace` takes them). It starts from
        the default preset, as the command line does, so `ticketlab --task-module FILE find --task NAME` with the
        same changes names the same run directory."""
        return preset(DEFAULT_PRESET).replace(**{"task": self.name, "model.name": self.model_name,
                                                 "data.name": dataset or self.datasets[0], **changes})


def simple_task(
    name: str,
    *,
    model: Callable[[], nn.Module],
    data: Callable[[], Splits | Mapping[str, tuple]] | Mapping[str, Callable[[], Splits | Mapping[str, tuple]]],
    loss: Callable[[nn.Module, tuple], torch.Tensor],
    evaluate: Callable[[nn.Module, tuple], Mapping[str, float]],
    metric: str,
    direction: str,
    prunable: Callable[[nn.Module], dict[str, nn.Parameter]] = prunable_weights,
    log_scale: bool = False,
) -> SimpleTask:
    """Register task `name` built from plain functions and return it (`SimpleTask.config` builds its configs).

    - `model()` -> a new network; ticketlab re-draws its weights from each trial's seed (`model.init`, default
      glorot_normal, 'torch_default' keeps the module's own initializers seeded).
    - `data`: a function returning the splits (a `Splits`, or a dict with "train", "val" and "test", each a tuple
      of tensors with the inputs first), or a dict of such functions by dataset name (`data.name`; `transfer`
      moves tickets between them). The data is loaded once per run, so seed whatever it draws.
    - `loss(model, batch)` -> the scalar training loss of one batch (a tuple of `train.batch_size` rows of the
      train split's tensors); the validation loss (early stopping) is its mean over the validation split.
    - `evaluate(model, split)` -> {metric: value, ...} on a whole split (a tuple of tensors), called in eval mode
      without gradients; it may return "loss" itself.
    - `metric`, `direction` ('max' or 'min'): the primary metric the results and the report show.
    - `prunable(model)` -> name -> weight to prune (default: Linear, Conv, Embedding, recurrent and attention
      weights, by module type; never biases or normalization).
    Registering a name again replaces the task (a script imported again by its worker processes)."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction {direction!r} of task {name!r} is unknown; allowed: max, min")
    if not (isinstance(metric, str) and metric.isidentifier()) or metric == "loss":
        raise ConfigError(f"metric {metric!r} of task {name!r} must be a name such as 'mse' (not 'loss')")
    loaders = dict(data) if isinstance(data, Mapping) else {name: data}
    if not loaders or not all(callable(loader) for loader in loaders.values()):
        raise ConfigError(f"data of task {name!r} must be a function or a dict of functions returning the splits")
    primary = register_metric(Metric(metric, higher_is_better=DIRECTIONS[direction], label=f"test {metric}",
                                     log_scale=log_scale))
    functions = _Functions(loss, evaluate, primary.name)
    task = Task(
        name=name,
        load_data=lambda data_config: _load(loaders, data_config.name, name),
        build_model=lambda config, splits: model(),
        initialize=lambda network, config, seed: initialize(network, config.model.init, seed),
        train=functions.train,
        evaluate=functions.evaluate,
        metric=lambda config: primary,
        steps_per_epoch=lambda splits, train: iterations_per_epoch(len(splits.train[0]), train.batch_size),
        prunable=prunable,
        score_losses=functions.score_losses,
        ones_input=lambda splits: torch.ones((1, *splits.input_shape), device=splits.device),
        example_inputs=lambda splits, split, count: getattr(splits, split)[0][:count],
        transfers=True,
        train_examples=lambda splits: len(splits.train[0]),
    )
    caller = sys._getframe(1).f_globals.get("__name__", "__main__")  # the defining file, for messages only
    info = TaskInfo(module=caller, datasets=tuple(loaders), models=(name,),
                    label=f"{name} (a user task)", task=task)
    TASKS.register(name, info, replace=True)
    return SimpleTask(name, task, tuple(loaders), name)


def _load(loaders: dict, dataset: str, task: str) -> Splits:
    if dataset not in loaders:
        raise ConfigError(f"task {task!r} does not have data.name {dataset!r}; allowed: {', '.join(loaders)}")
    splits = loaders[dataset]()
    if isinstance(splits, Mapping):
        missing = [split for split in SPLITS if split not in splits]
        if missing:
            raise TicketlabError(f"the data of task {task!r} lacks split {missing[0]!r}; return train, val and test")
        splits = Splits(*(tuple(splits[split]) for split in SPLITS))
    if not isinstance(splits, Splits) or not all(
            isinstance(part, tuple) and part and all(torch.is_tensor(t) for t in part) for part in
            (splits.train, splits.val, splits.test)):
        raise TicketlabError(f"the data of task {task!r} must be Splits or a dict of train/val/test tuples of tensors")
    return splits


@dataclass
class _Functions:
    """The user's loss and evaluation, as the engine, the scores and the analyses call them."""

    loss: Callable
    evaluate_split: Callable
    metric: str

    def evaluate(self, model: nn.Module, splits: Splits, split: str) -> dict[str, float]:
        """{"loss": mean loss, metric: value} of `model` on `split` ("train", "val" or "test")."""
        tensors = getattr(splits, split)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                values = {key: float(value) for key, value in dict(self.evaluate_split(model, tensors)).items()}
                if "loss" not in values:
                    values["loss"] = float(self.loss(model, tensors))
        finally:
            model.train(was_training)
        if self.metric not in values:
            raise TicketlabError(f"evaluate returned {sorted(values)}; it must return the task's metric "
                                 f"{self.metric!r}")
        return values

    def train(self, model: nn.Module, splits: Splits, config, *, masks, data_seed: int, augment=None,
              **run) -> TrainResult:
        """The engine's masked loop with the user's batches and loss (the contract of `Task.train`)."""
        procedure = _Procedure(self, model, splits, config, data_seed)
        return train_masked(model, config, procedure, steps_per_epoch=procedure.per_epoch, device=splits.device,
                            masks=masks, **run)

    def score_losses(self, model: nn.Module, splits: Splits, config, seed: int, batches: int, first_batch: int = 0,
                     temperature: float = 1.0):
        """The training loss of `model` on the batches the loop draws at steps first_batch .. first_batch +
        batches - 1 from data seed `seed` (SNIP, GraSP, RigL), the model's outputs divided by `temperature`."""
        scored = model if temperature == 1.0 else _Tempered(model, temperature)
        for step in range(first_batch, first_batch + batches):
            yield self.loss(scored, _batch(splits, step, config.batch_size, seed))


class _Tempered(nn.Module):
    """The user's model with its outputs divided by a temperature (GraSP's tempered logits)."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, *inputs):
        return self.model(*inputs) / self.temperature


def _batch(splits: Splits, step: int, batch_size: int, data_seed: int) -> tuple[torch.Tensor, ...]:
    rows = batch_indices(step, len(splits.train[0]), batch_size, data_seed).to(splits.device)
    return tuple(tensor.index_select(0, rows) for tensor in splits.train)


class _Procedure:
    """A user task's part of `train_masked`: its batches and loss, and the test numbers at the validation
    minimum (`record.best["test"]`)."""

    checkpoint_json_keys = ("early_stop",)
    grads_to_none = True
    checkpoint_on_stop = False

    def __init__(self, functions: _Functions, model: nn.Module, splits: Splits, config, data_seed: int) -> None:
        self.functions, self.model, self.splits, self.config, self.data_seed = (
            functions, model, splits, config, data_seed)
        self.per_epoch = iterations_per_epoch(len(splits.train[0]), config.batch_size)
        self.metric = functions.metric
        self.record = EarlyStop({"test": {"loss": float("nan"), self.metric: float("nan")}})

    def restore(self, parts: dict, metadata: dict) -> str | None:
        self.record.load(metadata["early_stop"])
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        self.model.train()

    def train_step(self, step: int, update) -> torch.Tensor:
        loss = self.functions.loss(self.model, _batch(self.splits, step, self.config.batch_size, self.data_seed))
        update(loss)
        return loss

    def observe(self, step: int, train_loss: float) -> dict:
        val = self.functions.evaluate(self.model, self.splits, "val")
        row = {"step": step, "train_loss": train_loss, "val_loss": val["loss"],
               f"val_{self.metric}": val[self.metric]}
        test = None
        if self.record.improves(val["loss"]):
            test = self.functions.evaluate(self.model, self.splits, "test")
            row.update({"test_loss": test["loss"], f"test_{self.metric}": test[self.metric]})
        return self.record.observe(row, val["loss"], lambda: {"test": test})

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {}, json_metadata(early_stop=self.record.state())

    def close(self) -> None:
        pass

    def result(self, step: int) -> TrainResult:
        record, metric = self.record, self.metric
        last = record.last_row
        final_test = ({"loss": last["test_loss"], metric: last[f"test_{metric}"]} if "test_loss" in last
                      else self.functions.evaluate(self.model, self.splits, "test"))
        return record_result(record, step, metric, final_test)
