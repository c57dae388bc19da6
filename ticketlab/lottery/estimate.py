"""An experiment's size from its config alone (jobs, levels, iterations), the limit beyond which `find` asks
first, and the checks that need the data's size.

Torch-free: the jobs are those of the variants' declared graph (`ticketlab.lottery.graph.plan_graph`) and each
job's length is its variant's `planned_steps`, so `ticketlab find` refuses too large an experiment before it
imports torch or loads data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ticketlab.config import ExperimentConfig, check_steps, parse_step, step_count
from ticketlab.errors import ConfigError
from ticketlab.lottery.graph import plan_graph
from ticketlab.lottery.variants import variant_named


def check_against_data(config: ExperimentConfig, iterations_per_epoch: int, train_examples: int | None = None,
                       limit: "PlanLimit | None" = None) -> None:
    """The checks that need the data: the batch fits in the `train_examples` (when the task has examples), steps
    in epochs are consistent with the others, and (with `limit`) the plan is not too large. Call after loading the
    data, before writing the run directory."""
    batch_size = config.train.batch_size
    if train_examples is not None and batch_size > train_examples:
        raise ConfigError(f"train.batch_size {batch_size} is larger than the {train_examples} training examples "
                          f"of {config.data.name}; use at most {train_examples}")
    check_steps(config, iterations_per_epoch)
    if limit is not None:
        check_plan(config, limit, iterations_per_epoch)


@dataclass(frozen=True)
class PlanLimit:
    """The largest experiment run without asking (`ticketlab find --allow-large` lifts it)."""

    max_jobs: int = 100_000
    max_iterations: int = 10**10


@dataclass(frozen=True)
class PlanEstimate:
    """An experiment's size, computed from the config and the variants' declarations (no model is built)."""

    jobs: int
    levels: int  # pruning levels after the dense one (an upper bound when a target percent decides it)
    iterations: int | None  # optimizer steps of all jobs; None when steps are in epochs and the data size unknown


def planned_levels(config: ExperimentConfig) -> int:
    """prune.levels, or (with a target percent) the rounds the slowest rate needs to reach the target."""
    prune = config.prune
    if prune.target_remaining_percent is None:
        return prune.levels
    slowest = min([prune.rate] + [rate for rate in (prune.output_rate,) if rate is not None]
                  + [rate for _, rate in prune.layer_rates])
    fraction = prune.target_remaining_percent / 100
    return 0 if fraction >= 1 else min(10_000, math.ceil(math.log(fraction) / math.log1p(-slowest)))


def plan_estimate(config: ExperimentConfig, iterations_per_epoch: int | None = None) -> PlanEstimate:
    """Jobs (every trial's job graph: the dense run, each level's variants and the jobs they read that were not
    asked for, such as the hidden ticket chain of the reinit/random controls or the early-bird search) and total
    iterations (each job's `Variant.planned_steps`; the early-bird search counted whole, an upper bound)."""
    levels = planned_levels(config)
    trial_graph = plan_graph(config.variants, 1, levels)  # every trial's graph is the same
    texts = [config.train.steps, config.prune.rewind, config.prune.finetune_steps or config.train.steps]
    iterations = None
    if iterations_per_epoch is not None or all(step_count(text)[1] == "it" for text in texts):
        total, rewind, finetune = (parse_step(text, iterations_per_epoch) for text in texts)
        iterations = config.trials * sum(variant_named(key.variant).planned_steps(total, rewind, finetune)
                                         for key in trial_graph)
    return PlanEstimate(config.trials * len(trial_graph), levels, iterations)


def check_plan(config: ExperimentConfig, limit: PlanLimit = PlanLimit(),
               iterations_per_epoch: int | None = None) -> PlanEstimate:
    """The plan estimate; ConfigError with its numbers if it exceeds `limit` (iterations: when known)."""
    plan = plan_estimate(config, iterations_per_epoch)
    too_many_jobs = plan.jobs > limit.max_jobs
    if too_many_jobs or (plan.iterations is not None and plan.iterations > limit.max_iterations):
        iterations = "" if plan.iterations is None else f" and {plan.iterations:,} training iterations"
        bound = (f"{limit.max_jobs:,} jobs" if too_many_jobs else f"{limit.max_iterations:,} iterations")
        raise ConfigError(f"the experiment is {plan.jobs:,} jobs ({config.trials:,} trials x (1 + {plan.levels:,} "
                          f"levels x {len(config.variants)} variants)){iterations}, more than {bound}; lower "
                          "trials, levels or train.steps, or pass --allow-large if you mean it")
    return plan
