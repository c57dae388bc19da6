"""The task interface: everything the lottery engine needs from a task, and nothing more.

The lottery layer (job graph, masks, resets, rewinding, variants, run directories, analyses) calls only these
functions, so it does not know whether it trains a classifier, a language model or an agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from torch import nn

from ticketlab.config import DataConfig, ExperimentConfig, TrainConfig
from ticketlab.pruning import prunable_weights
from ticketlab.tasks.data_settings import refuse_other_task_settings
from ticketlab.tasks.metrics import Metric

# Keys every task's training result (`train(...).to_dict()`) holds; result.json and results.csv carry them.
GENERIC_RESULT_KEYS = (
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_test_metric",
    "final_iteration",
    "final_val_loss",
    "final_test_metric",
)


class TaskData(Protocol):
    """A task's in-memory splits: anything that moves to a device."""

    def to(self, device) -> "TaskData": ...


@dataclass(frozen=True)
class Task:
    """One task (classification, language modelling, ...): a registry of plain functions.

    - `load_data(data_config)` -> TaskData (train/validation/test splits in memory).
    - `build_model(config, data)` -> an nn.Module sized for the data; `initialize(model, config, seed)` re-draws
      every parameter from `seed` (no global RNG) and returns it.
    - `train(model, data, train_config, *, masks, data_seed, start_step, total_steps, optimizer_state, job_dir,
      snapshot_steps, on_snapshot, on_progress, checkpoint_interval_s, stop_after_step, augment, mask_schedule)`
      trains in place with exact masks and exact resume (the contract of `ticketlab.training.loop.train_model`) and returns an
      object whose `to_dict()` holds GENERIC_RESULT_KEYS plus the task's own columns.
    - `evaluate(model, data, split)` -> {"loss": mean loss, metric.name: value} on "train", "val" or "test".
    - `metric(config)` -> the primary Metric (it may depend on the dataset: perplexity or bits per character).
    - `steps_per_epoch(data, train_config)` -> optimizer steps in one pass over the training split.
    - `prunable(model)` -> name -> weight tensor the lottery layer prunes (by module type).
    - `stackable(model, device, population)` -> whether jobs of this model train as stacked populations.
    - `train_population(members, data, train_config, *, on_progress, checkpoint_interval_s)` (optional) -> the
      members' training results, in order: the task's own population trainer (members are
      `ticketlab.training.population.PopulationMember`s; it clips gradients per member). None: the
      classification engine (`ticketlab.training.population.train_population`), which does not clip.
    - `population_size(model, data, config)` (optional) -> the automatic population size; None: from the memory
      budget of the classification engine.
    - `reinitialize(model, config, seed)` (optional) -> fresh random weights drawn from `seed`, for the random
      reinitialization controls of a task whose `initialize` starts from trained weights (a pre-trained model's
      θ0 is θ_pre); None: the controls draw with `initialize`.
    - `per_step_hook(config, model)` -> the loop's `augment(batch, seed)` hook or None.
    - `load_experiment_data(config)` (optional) -> the data when it needs more than `config.data`; the engine calls
      `load_task_data(task, config)`.
    - `pretrained_start(model, config)` (optional) -> `model` (freshly initialized) with the weights every trial
      starts from when the config names pre-trained ones (classification's `model.weights`): θ0 of the dense run
      and of the tickets reset to it; the reinitialization controls still draw seeded weights. None: θ0 is seeded.
    - `bind_run(data, run_dir)` -> the data as this run directory uses it (e.g. a tokenizer the run saved on its
      first start and reuses), called once the run directory is locked; the default returns `data`.
    - `score_losses(model, data, train_config, seed, batches, first_batch=0, temperature=1.0)` -> an iterable of
      `batches` scalar training losses of `model` on seeded training batches, its logits divided by `temperature`
      (GraSP's, passed only for GraSP), for the scores that need the loss (SNIP, GraSP) and RigL's regrowth; None:
      the task has none. Batch k (k = first_batch, first_batch + 1, ...) is the batch the task's training loop
      draws at step k from data seed `seed` (documented per task, so a user can recompute a mask; see
      `ticketlab.lottery.at_init.at_init_mask` for the seed the jobs pass).
    - `ones_input(data)` -> an all-ones input batch of one example (SynFlow's data-free input); None: none.
    - `example_inputs(data, split, count)` -> the first `count` inputs of `split` as one tensor the model's forward
      takes: `export` checks an export's outputs on them and `cost` counts FLOPs per inference with them. None:
      the task's models take more than one tensor or carry state (language, translation, RL), so `export` and
      `cost` refuse its runs in one line before loading anything.

    What the task can do, asked by the lottery, analysis and export layers instead of testing its name (defaults:
    it cannot):
    - `transfers`: whether `transfer` can start this task's networks from another run's tickets: the same
      architecture on other data, every tensor but the output layer's (`ticketlab.pruning.output_layer_name`)
      taken from the source ticket. False: `transfer` refuses its runs in one line.
    - `tickets_from`: other tasks whose tickets `transfer` starts this task's networks from (glue takes mlm's:
      Chen et al. 2020's universal subnetwork). The tensors both networks hold, by name and shape, start from the
      source ticket with its masks; the rest (a new head, a pooler the source lacks) are freshly initialized,
      as the output layer is, and dense.
    - `train_examples(data)` -> how many training examples a batch must fit in (`find` and `sweep` refuse a larger
      train.batch_size before writing anything), or None where the data has no such count (streamed images,
      token streams, environments).
    - `labelled_examples(data, split, count)` -> (inputs, labels) of the first `count` examples (None: all) of
      "train", "val" or "test" as tensors in memory, or None where the data is streamed: `stability` evaluates the
      linear path between two networks on them in large batches (honouring --train-examples/--test-examples).
      None (no such function): every split is evaluated through `evaluate`.
    - `model_for_shapes(config, input_shape, num_classes)` -> a fresh network for inputs of `input_shape` with
      `num_classes` outputs, without loading data: `load_export` rebuilds an export from its file's metadata with
      it. None: an export of this task is loaded only with a module of the run's architecture passed in.
    - `data_parallel`: whether its jobs train data-parallel under torchrun (its `train` takes `group=`).
    - `stack_refusal`: why a model of this task cannot be stacked into a population, for the one-line notice
      (e.g. "not a Flatten/Linear/ReLU stack ..."); empty: a generic notice naming the task.
    """

    name: str
    load_data: Callable[[DataConfig], Any]
    build_model: Callable[[ExperimentConfig, Any], nn.Module]
    initialize: Callable[[nn.Module, ExperimentConfig, int], nn.Module]
    train: Callable[..., Any]
    evaluate: Callable[[nn.Module, Any, str], dict[str, float]]
    metric: Callable[[ExperimentConfig], Metric]
    steps_per_epoch: Callable[[Any, TrainConfig], int]
    prunable: Callable[[nn.Module], dict[str, nn.Parameter]] = prunable_weights
    stackable: Callable[..., bool] = lambda model, device, population: False
    per_step_hook: Callable[[ExperimentConfig, nn.Module], Any] = lambda config, model: None
    bind_run: Callable[[Any, Any], Any] = lambda data, run_dir: data
    # tasks whose data depends on more than the data section (an RL environment and its PPO settings) load here
    load_experiment_data: Callable[[ExperimentConfig], Any] | None = None
    pretrained_start: Callable[[nn.Module, ExperimentConfig], nn.Module] | None = None
    score_losses: Callable[..., Any] | None = None
    reinitialize: Callable[[nn.Module, ExperimentConfig, int], nn.Module] | None = None
    ones_input: Callable[[Any], Any] | None = None
    example_inputs: Callable[[Any, str, int], Any] | None = None
    train_population: Callable[..., Any] | None = None
    population_size: Callable[[nn.Module, Any, ExperimentConfig], int] | None = None
    # capabilities (see the docstring)
    transfers: bool = False
    tickets_from: tuple[str, ...] = ()
    train_examples: Callable[[Any], int | None] = lambda data: None
    labelled_examples: Callable[[Any, str, int | None], Any] | None = None
    model_for_shapes: Callable[[ExperimentConfig, tuple[int, ...], int], nn.Module] | None = None
    data_parallel: bool = False
    stack_refusal: str = ""


def load_task_data(task: Task, config: ExperimentConfig):
    """The task's in-memory data for `config` (its `load_experiment_data`, else `load_data(config.data)`), after
    refusing the settings of other tasks that this task would ignore."""
    refuse_other_task_settings(config)
    return task.load_experiment_data(config) if task.load_experiment_data is not None else task.load_data(config.data)
