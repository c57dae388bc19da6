"""Training copies of a network from one starting point, for the stability analyses.

A copy is trained from weights W_k (the dense run's after k steps, replayed once and kept as a rewind point) to
the end of training with its own data order; stored in a job directory (weights, metrics, result.json), a
finished copy is reused and a killed one resumes.

Copies read no other copy's output, so how they train never changes their numbers: one at a time (the reference
path), several stacked into one population (`ticketlab.training.population`, whose members are bitwise the jobs
trained alone), or in worker processes that rebuild the run from its directory (`train_copies_in_workers`).
"""

from __future__ import annotations

import copy
import math
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ticketlab.analysis.connectivity import DEFAULT_POINTS, PathEvaluation, evaluate_path
from ticketlab.analysis.distance import WeightDistance, weight_distance
from ticketlab.config import ExperimentConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.planner import notify_unstacked, stacks_jobs
from ticketlab.pruning import full_masks, prunable_weights
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, save_tensors, write_json
from ticketlab.tasks.base import TaskData
from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.loop import train_model
from ticketlab.training.optim import optimizer_tensors

RESULT_FILE = "result.json"


def train_from(
    model: nn.Module,
    data: TaskData,
    train_config: TrainConfig,
    *,
    data_seed: int,
    masks: Mapping[str, torch.Tensor] | None = None,
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    job_dir: Path | None = None,
    augment: Callable | None = None,
    on_progress: Callable[[int], None] | None = None,
    train: Callable = train_model,
    prunable: Callable = prunable_weights,
    checkpoint_interval_s: float = 30.0,
) -> dict[str, torch.Tensor]:
    """Train `model` in place from its current weights, taken to be those after `start_step` steps, to
    `total_steps` (default: train_config.steps) with data order `data_seed`; returns the final state (CPU).

    With `job_dir`, a finished run (result.json present) is loaded instead of retrained and a killed one
    resumes. `masks` default to the dense network (all ones); `augment` is train_model's per-step hook. `train`
    and `prunable` are the task's (default: classification's `train_model` and Linear/Conv/Embedding weights).
    A job directory gets a resume checkpoint at most every `checkpoint_interval_s` seconds. `optimizer_state` is
    left as it was (the copies of a pair start from the same state).
    """
    job_dir = Path(job_dir) if job_dir is not None else None
    if job_dir is not None and (job_dir / RESULT_FILE).exists():
        final = load_tensors(job_dir / "weights_final.safetensors")
        model.load_state_dict(final)
        return final
    masks = dict(masks) if masks is not None else full_masks(prunable(model))
    if optimizer_state is not None:  # the optimizer steps its state in place: every copy starts from its own
        optimizer_state = {name: value.clone() for name, value in optimizer_state.items()}
    result = train(
        model, data, train_config, masks=masks, data_seed=data_seed, start_step=start_step,
        total_steps=total_steps, optimizer_state=optimizer_state, job_dir=job_dir, augment=augment,
        on_progress=on_progress, checkpoint_interval_s=checkpoint_interval_s,
    )
    return _store_copy(model, job_dir, data_seed, start_step, result)


def _store_copy(model: nn.Module, job_dir: Path | None, data_seed: int, start_step: int, result,
                **record) -> dict[str, torch.Tensor]:
    """The trained copy's final state (CPU), saved with its result.json (written last: "done") under `job_dir`."""
    final = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    if job_dir is not None:
        save_tensors(job_dir / "weights_final.safetensors", final)
        write_json(job_dir / RESULT_FILE,
                   {"data_seed": data_seed, "start_step": start_step, **result.to_dict(), **record})
    return final


@dataclass(frozen=True)
class CopyJob:
    """One copy of a run's network to train, in plain values (it is pickled to worker processes): the files it
    starts from, its data order and where it is stored."""

    job_dir: str
    weights: str  # the starting weights W_k
    optimizer: str | None  # the dense run's optimizer state at step k; None: a fresh optimizer
    mask: str | None  # the subnetwork's mask; None: the dense network
    data_seed: int
    start_step: int


def train_copies(ctx: ExperimentContext, jobs: Sequence[CopyJob], *, augment: Callable | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
    """Train `jobs` to the end of the run's training: one job alone (the task's trainer), several as one stacked
    population (the task's population trainer, else the classification engine); the caller decides they stack.
    A killed job resumes from its checkpoint whichever way it trains next."""
    networks, masks, optimizer_states = [], [], []
    for job in jobs:
        network = ctx.make_model(0)
        network.load_state_dict(load_tensors(job.weights))
        networks.append(network)
        masks.append(full_masks(ctx.task.prunable(network)) if job.mask is None
                     else {name: value.float() for name, value in load_tensors(job.mask).items()})
        optimizer_states.append((load_tensors(job.optimizer) or None) if job.optimizer is not None else None)
    if len(jobs) == 1:
        train_from(networks[0].to(ctx.device), ctx.data, ctx.config.train, masks=masks[0],
                   start_step=jobs[0].start_step, total_steps=ctx.total_steps, optimizer_state=optimizer_states[0],
                   data_seed=jobs[0].data_seed, job_dir=Path(jobs[0].job_dir),
                   augment=per_step_hook(ctx, networks[0], augment), on_progress=on_progress,
                   train=ctx.task.train, prunable=ctx.task.prunable, checkpoint_interval_s=ctx.checkpoint_interval_s)
        return
    from ticketlab.training.population import PopulationMember, train_population

    members = [PopulationMember(model=network, masks=mask, data_seed=job.data_seed, start_step=job.start_step,
                                total_steps=ctx.total_steps, optimizer_state=optimizer_state,
                                job_dir=Path(job.job_dir))
               for job, network, mask, optimizer_state in zip(jobs, networks, masks, optimizer_states)]
    if ctx.task.train_population is not None:  # the task's own population trainer, as `find` uses it
        results = ctx.task.train_population(members, ctx.data, ctx.config.train, on_progress=on_progress,
                                            checkpoint_interval_s=ctx.checkpoint_interval_s)
    else:  # stackable models have no dropout: the per-step hook only augments the batch, the same for every copy
        results = train_population(members, ctx.data, ctx.config.train, on_progress=on_progress,
                                   checkpoint_interval_s=ctx.checkpoint_interval_s,
                                   augment=per_step_hook(ctx, networks[0], augment))
    for job, member, result in zip(jobs, members, results):
        _store_copy(member.model, Path(job.job_dir), job.data_seed, job.start_step, result,
                    population_size=len(jobs))


MAX_WORKERS = 256
MAX_POPULATION = 100_000


def check_copy_execution(population: int, workers: int, checkpoint_interval_s: float, custom: tuple = ()) -> None:
    """ConfigError for a population or a number of workers out of range, a checkpoint interval that is not a
    finite number of seconds >= 0, or worker processes asked to train a caller's own model, data or augment."""
    for name, value, high in (("population", population, MAX_POPULATION), ("workers", workers, MAX_WORKERS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ConfigError(f"{name} {value!r} must be an integer between 1 and {high:,}")
    if not (isinstance(checkpoint_interval_s, (int, float)) and math.isfinite(checkpoint_interval_s)
            and checkpoint_interval_s >= 0):
        raise ConfigError(f"checkpoint interval {checkpoint_interval_s!r} must be a finite number of seconds >= 0")
    if workers > 1 and any(value is not None for value in custom):
        raise ConfigError(f"workers {workers} rebuild the run from its directory and cannot take a custom model, data "
                          "or augment; train the copies in this process (workers 1)")


def copies_per_population(ctx: ExperimentContext, template: nn.Module, population: int) -> int:
    """Copies per population: `population` where the task stacks the model, else 1 (said on stderr)."""
    if population > 1 and not stacks_jobs(ctx, template, population):
        notify_unstacked(ctx, template, population)
        return 1
    return population


def train_copy_batches(ctx: ExperimentContext, batches: Sequence[Sequence[CopyJob]], workers: int, *,
                       augment: Callable | None = None, bar) -> None:
    """Train every batch (`train_copies`): in this process, or in up to `workers` worker processes."""
    if workers > 1 and len(batches) > 1:
        bar.set_waiting(f"starting {min(workers, len(batches))} worker processes, each loads the data")
        train_copies_in_workers(ctx, batches, min(workers, len(batches)), bar)
        return
    for batch in batches:
        train_copies(ctx, batch, augment=augment, on_progress=bar.update)


def train_copies_in_workers(ctx: ExperimentContext, batches: Sequence[Sequence[CopyJob]], workers: int,
                            bar) -> None:
    """Train each batch of copies (`train_copies`) in one of `workers` spawned processes that rebuild the run from
    its directory and data, as `find`'s worker processes do; their progress goes onto `bar`. Only built-in models
    and data (a worker cannot rebuild the caller's)."""
    from ticketlab.lottery.executors.processes import drain, worker_pool

    updates = multiprocessing.get_context("spawn").Queue()
    with worker_pool(ctx, workers, updates) as pool:
        running = {pool.submit(_train_copies_in_worker, list(batch)) for batch in batches}
        while running:
            finished, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            drain(updates, bar)
            for future in finished:
                future.result()  # re-raise a worker's error here
        drain(updates, bar)


def _train_copies_in_worker(jobs: list[CopyJob]) -> None:
    from ticketlab.lottery.executors.processes import worker_experiment

    ctx, report_progress = worker_experiment()
    train_copies(ctx, jobs, on_progress=report_progress)


@dataclass(frozen=True)
class CopyPair:
    """Two copies trained from one starting point with different data orders, and how far apart they ended."""

    state_a: dict[str, torch.Tensor] = field(repr=False)
    state_b: dict[str, torch.Tensor] = field(repr=False)
    distance: WeightDistance
    path: PathEvaluation


def data_order_stability(
    model: nn.Module,
    data: TaskData,
    train_config: TrainConfig,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    data_seeds: tuple[int, int] = (0, 1),
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    points: int = DEFAULT_POINTS,
    job_dirs: tuple[Path, Path] | None = None,
) -> CopyPair:
    """Train two copies of `model` (masked by `masks`; `model` itself is untouched) with data orders
    `data_seeds`; measure their distance over the prunable weights in the mask and the error barrier between
    them on the whole train and test sets. `job_dirs` store the copies for reuse. `data` holds labelled tensors
    in memory (`x_train`, `y_train`, `x_test`, `y_test`, as the classification task's in-memory datasets do) and
    the copies train with the classification loop; `stability_analysis` measures any task's runs."""
    states = [
        train_from(copy.deepcopy(model), data, train_config, data_seed=seed, masks=masks, start_step=start_step,
                   total_steps=total_steps, optimizer_state=optimizer_state,
                   job_dir=job_dirs[index] if job_dirs else None)
        for index, seed in enumerate(data_seeds)
    ]
    names = list(prunable_weights(model))
    distance = weight_distance(states[0], states[1], names=names, masks=masks)
    splits = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    path = evaluate_path(model, states[0], states[1], splits, points=points, batchnorm_inputs=data.x_train)
    return CopyPair(states[0], states[1], distance, path)


def copy_data_seed(config: ExperimentConfig, trial: int, index: int) -> int:
    """Data-order seed of copy 0 or 1: the same for every level and rewind step, so the subnetwork's copy 0
    and the full network's copy 0 see the same batches (pruning stability)."""
    return derive_seed(config.seed, trial, "stability_data_order", index)


def dense_init_path(ctx: ExperimentContext, trial: int) -> Path:
    """The dense job's stored initialization W_0 of `trial` (its presence says the dense run has started)."""
    return JobKey(trial, 0, DENSE).directory(ctx.run_dir) / "weights_init.safetensors"


def rewind_points(ctx: ExperimentContext, out_dir: Path, trial: int, steps: list[int], augment) -> dict:
    """step -> (weights, optimizer state or None) of the dense run after that many steps, replayed once.

    The dense run is replayed from its stored initialization with its own data order and schedule, so the
    weights equal the original run's at that step (its stored weights_rewind, when k is the run's rewind).
    """
    init = load_tensors(dense_init_path(ctx, trial))
    folder = out_dir / "rewind_points" / f"trial_{trial}"
    points = {0: (init, None)}
    missing = [s for s in steps if s > 0 and not (folder / f"step_{s:07d}" / "weights.safetensors").exists()]
    if missing:
        model = ctx.make_model(0)
        model.load_state_dict(init)

        def save(step: int, network: nn.Module, optimizer: torch.optim.Optimizer) -> None:
            if step in missing:
                save_tensors(folder / f"step_{step:07d}" / "optimizer.safetensors", optimizer_tensors(optimizer))
                save_tensors(folder / f"step_{step:07d}" / "weights.safetensors", network.state_dict())

        try:
            ctx.task.train(
                model.to(ctx.device), ctx.data, ctx.config.train, masks=full_masks(ctx.task.prunable(model)),
                data_seed=derive_seed(ctx.config.seed, trial, "data_order"), total_steps=ctx.total_steps,
                snapshot_steps=tuple(missing), on_snapshot=save, stop_after_step=max(missing),
                augment=per_step_hook(ctx, model, augment),
            )
        except TrainingInterrupted:
            pass
    for step in steps:
        if step > 0:
            weights, optimizer = rewind_point_files(ctx, out_dir, trial, step)
            points[step] = (load_tensors(weights), load_tensors(optimizer) or None)
    return points


def rewind_point_files(ctx: ExperimentContext, out_dir: Path, trial: int, step: int) -> tuple[Path, Path | None]:
    """The files of the rewind point `rewind_points` keeps: (weights, optimizer state); at step 0 the dense run's
    initialization and no optimizer state."""
    if step == 0:
        return dense_init_path(ctx, trial), None
    step_dir = out_dir / "rewind_points" / f"trial_{trial}" / f"step_{step:07d}"
    return step_dir / "weights.safetensors", step_dir / "optimizer.safetensors"


def per_step_hook(ctx: ExperimentContext, model: nn.Module, augment: Callable | None) -> Callable | None:
    """The per-step hook the run's own jobs use for `model` (augmentation, seeded dropout), unless given one."""
    if augment is not None:
        return augment
    return ctx.task.per_step_hook(ctx.config, model)
