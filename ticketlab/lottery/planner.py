"""Plan a lottery experiment's training as populations: the jobs of the graph that are ready together are
trained together, as one stacked network (`ticketlab.training.population`).

At any moment many jobs are ready — every trial's next level, the reinit and random-pruning controls of a level,
every one-shot sparsity once the dense network is trained — and none of them reads another's output, so they
can share a batched step. A job trained in a population writes the files `run_job` writes (mask, weights_init,
rewind points, weights_final, metrics.jsonl, result.json) with the same numbers, and checkpoints in the same
format, so a resume does not care which path trained a job. Two differences: metrics.jsonl rows carry no
test_accuracy (the test set is evaluated only for the minimum that is reported), and result.json adds
`population_size`, its `wall_time_s` being the whole population's. Population size 1 is the plain `run_job` path.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

import torch
from torch import nn

from ticketlab.errors import ConfigError, IntegrityError
from ticketlab.lottery.graph import on_chain, trains_alone, variant_rank
from ticketlab.lottery.context import ExperimentContext, is_done, read_result
from ticketlab.lottery.jobs import finish_job, prepare_job, run_job
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.variants import VARIANTS, variant_named
from ticketlab.store import read_json, write_json
from ticketlab.training.population import (
    PopulationMember,
    can_vectorize,
    member_memory_bytes,
    population_eval_bytes,
    train_population,
)

CPU_MEMORY_FRACTION = 0.25  # of the machine's memory: other processes need the rest
CUDA_MEMORY_FRACTION = 0.5  # of the device's memory
PLAN_FILE = "population.json"


def ready_jobs(ctx: ExperimentContext, graph: dict[JobKey, tuple[JobKey, ...]]) -> list[JobKey]:
    """Jobs not done whose inputs are all done, those on the dependency chains first."""
    ready = [key for key, deps in graph.items() if not is_done(ctx, key) and all(is_done(ctx, dep) for dep in deps)]
    return sorted(ready, key=job_priority)


def job_priority(key: JobKey) -> tuple:
    """Sort key of ready jobs: the dependency chains (dense, ticket, fine-tune) first, then by level and trial, so
    every trial's chain advances and the controls fill in around it. (Jobs other jobs wait for: training them
    first shortens the experiment's critical path.)"""
    return (not on_chain(key), key.level, key.trial, variant_rank(key))


def population_plan(graph: dict[JobKey, tuple[JobKey, ...]], size: int) -> list[list[JobKey]]:
    """The populations a run from scratch trains, in order: each time, up to `size` ready jobs.

    The plan depends only on the graph and the size, never on what is already done, so a resumed run re-forms
    exactly the populations of the interrupted one and its members continue bit for bit.
    """
    done: set[JobKey] = set()
    plan = []
    while len(done) < len(graph):
        ready = sorted(
            (key for key, deps in graph.items() if key not in done and all(dep in done for dep in deps)),
            key=job_priority,
        )
        if not ready:
            raise RuntimeError(f"job graph has a cycle or a missing input among {sorted(set(graph) - done)[:3]}")
        plan.append(ready[:size])
        done.update(plan[-1])
    return plan


def memory_budget_bytes(device: torch.device) -> int:
    """Bytes a population may use on `device`: part of the free GPU memory, or of the available RAM."""
    # Total, not free, memory: the size (and so the populations a run forms) must not change between runs.
    if device.type == "cuda":
        _, total = torch.cuda.mem_get_info(device)
        return int(total * CUDA_MEMORY_FRACTION)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a modest machine
        total = 8 << 30
    return int(total * CPU_MEMORY_FRACTION)


def choose_population_size(ctx: ExperimentContext, budget_bytes: int | None = None) -> int:
    """How many jobs fit in one population under the memory budget (1 when the model cannot be stacked)."""
    model = ctx.make_model(0)
    if ctx.task.population_size is not None:
        return max(1, int(ctx.task.population_size(model, ctx.data, ctx.config)))
    if not can_vectorize(model):
        return 1
    budget = memory_budget_bytes(ctx.device) if budget_bytes is None else budget_bytes
    train_examples = ctx.task.train_examples(ctx.data) or 0
    per_member = member_memory_bytes(model, ctx.config.train, train_examples, getattr(ctx.data, "input_shape", None))
    return max(1, (budget - population_eval_bytes()) // per_member)


def stacks_jobs(ctx: ExperimentContext, model: nn.Module, population: int | None) -> bool:
    """Whether `run_graph` trains this model's jobs as populations: the task decides (classification: never with
    `population` 1, only for models that can be stacked, with the automatic size only where stacking pays off)."""
    # the classification engine steps every member together and does not clip per member: its clipped runs train
    # one job at a time (a task's own population trainer clips per member); nor do streamed datasets (image
    # folders), whose batches are decoded per job
    clips = ctx.config.train.clip_grad_norm is None or ctx.task.train_population is not None
    return (clips and _kernels_stack(ctx, model) and not getattr(ctx.data, "streamed", False)
            and ctx.task.stackable(model, ctx.device, population))


def _kernels_stack(ctx: ExperimentContext, model: nn.Module) -> bool:
    """Whether jobs on `train.kernels` stack: dense kernels always; sparse ones in the classifier populations of
    Linear/ReLU stacks (one block-diagonal product for all members), not in conv nets or a task's own trainer;
    compact networks (their widths differ per job) never."""
    if ctx.config.train.kernels == "dense":
        return True
    if ctx.config.train.kernels == "compact":
        return False
    from ticketlab.training.population.stackable import mlp_linears

    return ctx.task.train_population is None and mlp_linears(model) is not None


def notify_unstacked(ctx: ExperimentContext, model: nn.Module, population: int | None) -> None:
    """Say on stderr, in one line, why jobs that were not asked to train one at a time (`population` 1) do."""
    if population == 1:
        return
    name = type(model).__name__
    if ctx.config.train.kernels == "compact" and ctx.task.stackable(model, ctx.device, population):
        print(f"ticketlab: train.kernels 'compact' trains each job as its own smaller network: training {name}'s "
              "jobs one at a time", file=sys.stderr)
    elif not _kernels_stack(ctx, model) and ctx.task.stackable(model, ctx.device, population):
        print(f"ticketlab: train.kernels {ctx.config.train.kernels!r} stacks Linear/ReLU networks only: training "
              f"{name}'s jobs one at a time", file=sys.stderr)
    elif (ctx.config.train.clip_grad_norm is not None and ctx.task.train_population is None
            and ctx.task.stackable(model, ctx.device, population)):
        print("ticketlab: train.clip_grad_norm clips each job's gradients: training its jobs one at a time",
              file=sys.stderr)
    elif getattr(ctx.data, "streamed", False):
        if population is None:  # the automatic plan: nothing was asked that needs an answer (and a bad image's
            return  # error, which comes once decoding starts, stays the only line)
        print(f"ticketlab: {ctx.config.data.name} is read from disk per job: training its jobs one at a time",
              file=sys.stderr)
    elif ctx.task.stackable(model, ctx.device, 2):  # it could stack, but not by default on this device
        print(f"ticketlab: {name} trains one job at a time on {ctx.device.type} (stacked "
              "convolutions are slower there); --population N stacks N jobs", file=sys.stderr)
    elif ctx.task.stack_refusal:
        print(f"ticketlab: {name} cannot be stacked ({ctx.task.stack_refusal}); training its jobs one at a time",
              file=sys.stderr)
    elif ctx.task.train_population is not None:
        print(f"ticketlab: the {ctx.task.name} task cannot stack {name}; training its jobs one at a time",
              file=sys.stderr)
    else:
        print(f"ticketlab: the {ctx.task.name} task trains its jobs one at a time (populations stack "
              "classification networks only)", file=sys.stderr)


def run_graph(
    ctx: ExperimentContext,
    graph: dict[JobKey, tuple[JobKey, ...]],
    *,
    population: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_jobs_done: Callable[[list[JobKey]], None] | None = None,
    on_jobs_start: Callable[[list[JobKey]], None] | None = None,
) -> None:
    """Train every job of `graph` not done yet: repeatedly the ready jobs, up to `population` at a time.

    `population` None chooses the size from the memory budget; 1 trains one job at a time with `run_job` (the
    reference path). Models that cannot be stacked fall back to one at a time, with a one-line notice.
    """
    size = graph_population_size(ctx, population)
    for batch in population_plan(graph, size):
        batch = [key for key in batch if not is_done(ctx, key)]
        if not batch:
            continue
        if on_jobs_start:
            on_jobs_start(batch)
        train_batch(ctx, batch, size, on_progress=on_progress)
        if on_jobs_done:
            on_jobs_done(batch)


def graph_population_size(ctx: ExperimentContext, population: int | None) -> int:
    """The population size `run_graph` plans with (1 for models it does not stack, with a one-line notice)."""
    model = ctx.make_model(0)
    if stacks_jobs(ctx, model, population):
        return population or _planned_size(ctx)
    notify_unstacked(ctx, model, population)
    return 1


def train_batch(ctx: ExperimentContext, batch: list[JobKey], size: int,
                on_progress: Callable[[int], None] | None = None) -> None:
    """Train one entry of the population plan (`population_plan(graph, size)`): its solo jobs one at a time, the
    rest as one population (or the one job, for size 1). Done jobs are skipped, partial ones resume."""
    # jobs with their own runner (the early-bird search) never join a population
    alone = [key for key in batch if trains_alone(key) or _own_train_config(ctx, key) or _changes_mask_alone(ctx, key)]
    for key in alone:
        run_job(ctx, key, on_progress=on_progress)
    stacked = [key for key in batch if key not in alone]
    if stacked and size == 1:
        run_job(ctx, stacked[0], on_progress=on_progress)
    elif stacked:
        run_jobs_population(ctx, stacked, on_progress=on_progress)


def _changes_mask_alone(ctx: ExperimentContext, key: JobKey) -> bool:
    """The job's mask changes while it trains (gmp, rigl, set) and the task stacks its populations with its own
    trainer (RL's PPO), which has no mask-schedule hook; the classifier populations have one."""
    return (ctx.task.train_population is not None and key.variant in VARIANTS
            and variant_named(key.variant).mask_schedule(ctx, key) is not None)


def _own_train_config(ctx: ExperimentContext, key: JobKey) -> bool:
    """The job trains with another schedule than the experiment's (fine-tuning), so it cannot share a population's."""
    return key.variant in VARIANTS and variant_named(key.variant).train_config(ctx, key) != ctx.config.train


def settle_run_settings(ctx: ExperimentContext, model: nn.Module, population: int | None) -> None:
    """Record in population.json the population size and device type a run directory is trained with, at its first
    run; ConfigError for a later run asking for another, whose numbers would agree with the first only within
    tolerance. The automatic size (`population` None) takes the recorded one, so it always agrees; an explicit
    size is compared with the effective size it gives (1 for models `run_graph` does not stack)."""
    path = ctx.run_dir / PLAN_FILE
    device_type = ctx.device.type
    stacked = stacks_jobs(ctx, model, population)
    processes = ctx.group.world_size if ctx.group is not None else 1  # torchrun data parallelism
    if not path.exists():
        size = (population or choose_population_size(ctx)) if stacked else 1
        write_json(path, {"population": size, "device": device_type} | ({"processes": processes} if processes > 1
                                                                          else {}))
        return
    try:
        stored = read_json(path)
        stored_size = int(stored["population"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IntegrityError(f"{path} is damaged ({error}); write {{\"population\": N, \"device\": \"cpu\"}} with "
                             "the size and device the run was trained with, or use a new --root") from None
    stored_device = stored.get("device", device_type)  # runs before devices were recorded: any
    if stored_device != device_type:
        raise ConfigError(f"run directory {ctx.run_dir} was trained on {stored_device}, this run would train on "
                          f"{device_type}; use --device {stored_device}, or a new --root for a separate run")
    stored_processes = int(stored.get("processes", 1))
    if stored_processes != processes:
        trained = "one process" if stored_processes == 1 else f"{stored_processes} torchrun processes"
        advice = "run it without torchrun" if stored_processes == 1 else f"launch {stored_processes} processes in all"
        raise ConfigError(f"run directory {ctx.run_dir} was trained by {trained}, this run has {processes}; {advice}, "
                          "or use a new --root for a separate run")
    if population is not None and (population if stacked else 1) != stored_size:
        raise ConfigError(f"run directory {ctx.run_dir} was trained with --population {stored_size}, this run asks "
                          f"for --population {population}; use --population {stored_size} (or leave it out), or a "
                          "new --root for a separate run")
    if "device" not in stored:
        write_json(path, {**stored, "device": device_type})


def _planned_size(ctx: ExperimentContext) -> int:
    """The automatic population size, chosen once per run directory and reused when the run resumes."""
    path = ctx.run_dir / PLAN_FILE
    if path.exists():
        return int(read_json(path)["population"])
    size = choose_population_size(ctx)
    write_json(path, {"population": size})
    return size


def run_jobs_population(
    ctx: ExperimentContext, keys: list[JobKey], on_progress: Callable[[int], None] | None = None
) -> list[dict]:
    """Train the jobs `keys` (none may read another's output) as one population; returns their result records.

    Done jobs are skipped; partial jobs resume from their checkpoints. Writes what `run_job` writes.
    """
    started = time.time()
    records: dict[JobKey, dict] = {key: read_result(ctx, key) for key in keys if is_done(ctx, key)}
    pending = [key for key in keys if key not in records]
    starts = [prepare_job(ctx, key) for key in pending]
    members = [
        PopulationMember(
            model=start.model,
            masks=start.mask,
            data_seed=start.data_seed,
            start_step=start.start_step,
            total_steps=start.total_steps,
            optimizer_state=start.optimizer_state,
            job_dir=key.directory(ctx.run_dir),
            snapshot_steps=start.snapshot_steps,
            on_snapshot=start.on_snapshot,
            mask_schedule=start.mask_schedule,
        )
        for key, start in zip(pending, starts)
    ]
    # Stackable models have no dropout, so the per-step hook only augments the batch and is the same for every job.
    augment = starts[0].augment if starts else None
    if ctx.task.train_population is not None:  # the task's own trainer (RL: stacked PPO)
        results = ctx.task.train_population(members, ctx.data, ctx.config.train, on_progress=on_progress,
                                            checkpoint_interval_s=ctx.checkpoint_interval_s)
    else:
        results = train_population(members, ctx.data, ctx.config.train, on_progress=on_progress,
                                   checkpoint_interval_s=ctx.checkpoint_interval_s, augment=augment)
    wall_time_s = time.time() - started  # of the whole population, which trained `population_size` jobs
    for key, start, result in zip(pending, starts, results):
        records[key] = finish_job(ctx, key, start, result, wall_time_s=wall_time_s, population_size=len(pending))
    return [records[key] for key in keys]
