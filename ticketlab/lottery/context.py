"""What every job of a lottery run shares: the experiment context (config, run directory, data, seeded model
factory, task) and the per-level keep plan, and whether a job is done.

Every job is identified by (trial, level, variant) and owns one directory of the run:
``trial_{t}/level_{LL}/{variant}/`` holding mask.safetensors, weights_init.safetensors (the weights the job
started from, mask applied), weights_rewind.safetensors (dense job: the weights at the rewind step),
weights_final.safetensors, metrics.jsonl and result.json (written last: its presence means "done"; it records
the sha256 of the other files and of its own numbers, see `ticketlab.lottery.integrity`).
Level 0 of every variant is the shared dense job ``level_00/dense``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ticketlab.config import ExperimentConfig, parse_step
from ticketlab.lottery.integrity import read_sealed_result
from ticketlab.lottery.keys import DENSE, MASK_COST_FILE, RESULT_FILE, JobKey
from ticketlab.lottery.variants import variant_named
from ticketlab.pruning import check_n_m, next_keep_counts, output_weight_names, prunable_weights
from ticketlab.pruning.channels import channel_groups, channel_keep_plan
from ticketlab.tasks import load_task
from ticketlab.tasks.base import Task

__all__ = ["DENSE", "MASK_COST_FILE", "RESULT_FILE", "ExperimentContext", "JobKey", "check_model_settings", "is_done",
           "keep_plan", "layer_rates", "plan_total", "read_result"]


@dataclass
class ExperimentContext:
    """Everything a job needs: the config, where the run lives, the data, how to make a seeded model, and the task
    that trains and evaluates it (default: the config's task)."""

    config: ExperimentConfig
    run_dir: Path
    data: Any  # the task's in-memory splits (classification: DataSplits)
    make_model: Callable[[int], nn.Module]  # seed -> freshly initialized model (on CPU)
    device: torch.device = torch.device("cpu")
    checkpoint_interval_s: float = 30.0
    # rewind sweep: (step, run_dir) of sibling experiments sharing this dense run; the dense job also saves its
    # weights and optimizer state at each such step into that run's level_00/dense directory
    shared_rewind_runs: tuple[tuple[int, Path], ...] = ()
    task: Task | None = None
    # torchrun: this rank's `ticketlab.training.distributed.DataParallelGroup` (jobs train data-parallel), or None
    group: Any = None
    _plan: list | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.task is None:
            self.task = load_task(self.config.task)

    @property
    def steps_per_epoch(self) -> int:
        return self.task.steps_per_epoch(self.data, self.config.train)

    @property
    def total_steps(self) -> int:
        return parse_step(self.config.train.steps, self.steps_per_epoch)

    @property
    def rewind_step(self) -> int:
        return parse_step(self.config.prune.rewind, self.steps_per_epoch)

    def finetune_steps(self) -> int:
        text = self.config.prune.finetune_steps or self.config.train.steps
        return parse_step(text, self.steps_per_epoch)

    def keep_plan(self) -> list:
        """Survivors at each level: per-layer dicts (layerwise) or totals (global); index 0 is dense."""
        if self._plan is None:
            self._plan = keep_plan(self.config, self.make_model(0), self.task.prunable)
        return self._plan

    @property
    def levels(self) -> int:
        return len(self.keep_plan()) - 1


def keep_plan(config: ExperimentConfig, model: nn.Module, prunable: Callable = prunable_weights) -> list:
    """Per-level survivor counts from the prune config, stopping at `levels` or the target percent.

    `prunable(model)` selects the pruned tensors (the task's choice; by default Linear/Conv/Embedding/RNN weights).
    ConfigError for settings the model cannot satisfy, so they are refused before anything trains.
    """
    check_model_settings(config, model)
    if config.prune.n_m_pattern() is not None:
        check_n_m(prunable(model), config.prune.n_m_pattern())
    if config.prune.unit == "channel":
        return _channel_keep_plan(config, model)
    weights = prunable(model)
    rates = layer_rates(config, model, prunable)
    counts = {name: weight.numel() for name, weight in weights.items()}
    total = sum(counts.values())
    plan: list = [dict(counts) if config.prune.scope == "layerwise" else total]
    target = config.prune.target_remaining_percent
    max_levels = config.prune.levels if target is None else 10_000
    current = dict(counts)
    while len(plan) - 1 < max_levels:
        if target is not None and 100.0 * plan_total(plan[-1]) / total <= target:
            break
        if config.prune.scope == "layerwise":
            current = next_keep_counts(current, rates, "layerwise")
            plan.append(dict(current))
        else:
            plan.append(next_keep_counts({"all": plan[-1]}, {"all": config.prune.rate}, "global"))
        if plan_total(plan[-1]) == plan_total(plan[-2]):  # nothing left to prune at this rate
            plan.pop()
            break
    return plan


def check_model_settings(config: ExperimentConfig, model: nn.Module) -> None:
    """ConfigError for prune settings that need what `model` lacks: BatchNorm for `prune.channel_score bn_scale`
    (every channel group), and what each variant asks of the model (`Variant.check_model`)."""
    from ticketlab.errors import ConfigError

    prune = config.prune
    if prune.unit == "channel" and prune.channel_score == "bn_scale":
        bare = [group.producer for group in channel_groups(model) if group.norm is None]
        if bare:
            raise ConfigError(f"prune.channel_score 'bn_scale' needs a BatchNorm after every pruned layer; "
                              f"{type(model).__name__} has none after {bare[0]}: use 'l1'")
    for name in config.variants:
        variant_named(name).check_model(config, model)


def _channel_keep_plan(config: ExperimentConfig, model: nn.Module) -> list:
    """Channels kept per level under prune.unit 'channel' (per channel group, or in total under global scope)."""
    groups = channel_groups(model)
    names = [group.name for group in groups]
    for name, _ in config.prune.layer_rates:
        if name not in names:
            from ticketlab.errors import ConfigError

            raise ConfigError(f"prune.layer_rates names {name!r}; channel groups are: {', '.join(names)}")
    prune = config.prune
    return channel_keep_plan(groups, dict(prune.layer_rates), prune.scope, prune.rate, prune.levels,
                             prune.target_remaining_percent)


def plan_total(entry) -> int:
    return sum(entry.values()) if isinstance(entry, dict) else entry


def layer_rates(config: ExperimentConfig, model: nn.Module, prunable: Callable = prunable_weights) -> dict[str, float]:
    """The per-round pruning fraction of each prunable weight: `prune.rate`, `prune.output_rate` for the output
    weights, then the `prune.layer_rates` overrides.

    The output weights are those the model names (`ticketlab.pruning.output_weight_names`), matched by identity:
    both heads of an actor-critic; for a language model or Transformer with tied weights, the one matrix that is
    both the embedding and the output projection (listed under the embedding's name) gets the output rate, since
    pruning it prunes the output layer.
    """
    names = list(prunable(model))
    rates = {name: config.prune.rate for name in names}
    if config.prune.output_rate is not None:
        if not names:
            from ticketlab.errors import ConfigError

            raise ConfigError(f"model {type(model).__name__} has no prunable Linear/Conv/Embedding/RNN weights")
        for name in output_weight_names(model, prunable):
            rates[name] = config.prune.output_rate
    for name, rate in config.prune.layer_rates:
        if name not in rates:
            from ticketlab.errors import ConfigError

            raise ConfigError(f"prune.layer_rates names {name!r}; prunable weights are: {', '.join(names)}")
        rates[name] = rate
    return rates


def is_done(ctx: ExperimentContext, key: JobKey) -> bool:
    return (key.directory(ctx.run_dir) / RESULT_FILE).exists()


def read_result(ctx: ExperimentContext, key: JobKey) -> dict:
    """The finished job's record; IntegrityError if it does not match its digest."""
    return read_sealed_result(key.directory(ctx.run_dir) / RESULT_FILE)
