"""Stability of training to data order and to pruning (Frankle et al. 2019), and instability vs rewind point.

From the same starting weights W_k (the dense run's weights after k steps; W_0 is its initialization), copies
are trained from step k to the end of training (train.steps) with different data orders:

* data-order stability: the distance between two copies trained with data orders 0 and 1;
* pruning stability: the distance between a subnetwork m * W_k trained in isolation and the full network
  trained from W_k with the same data order, masked by m;
* instability: the error barrier on the linear path between the two copies (see `connectivity`).

Distances are over the prunable weights (Linear/Conv/Embedding) restricted to the subnetwork's mask, or over
every parameter with `all_parameters`. Each is reported three ways (see `distance.WeightDistance`): the raw L2 distance,
the L2 distance divided by the mean L2 norm of the two weight vectors (``relative``, in [0, 2]), and the angle
between the two vectors in degrees.

Over a run directory the trained copies are stored in ``RUN_DIR/analysis/stability/copies/...`` (weights,
metrics, result.json), so re-running an analysis reuses them and a killed run resumes. How the copies train
(`population` of them stacked into one network, `workers` processes, `checkpoint_interval_s`) never changes
their numbers (see `ticketlab.analysis.copies`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ticketlab.analysis.connectivity import (
    DEFAULT_POINTS,
    PathEvaluation,
    evaluate_path,
    evaluate_path_with,
    has_batchnorm,
    interpolation_alphas,
)
from ticketlab.analysis.copies import (
    RESULT_FILE,
    CopyJob,
    check_copy_execution,
    copies_per_population,
    copy_data_seed,
    dense_init_path,
    rewind_point_files,
    rewind_points,
    train_copy_batches,
)
from ticketlab.analysis.distance import weight_distance
from ticketlab.config import check_step_unit, config_from_dict, parse_step
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.lottery.experiment import model_factory, resolve_device
from ticketlab.lottery.run_lock import run_lock
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.progress import progress_bar
from ticketlab.lottery.variants import variants_where, winning_ticket
from ticketlab.pruning import full_masks, remaining_percent
from ticketlab.store import load_tensors, read_json, write_csv, write_json
from ticketlab.tasks import load_task
from ticketlab.tasks.base import TaskData, load_task_data
from ticketlab.training.batches import first_inputs

STABILITY_DIR = Path("analysis") / "stability"
STABILITY_COLUMNS = (
    "trial", "level", "variant", "weights_remaining_percent", "rewind_step",
    "data_order_l2", "data_order_relative", "data_order_angle_deg",
    "pruning_l2", "pruning_relative", "pruning_angle_deg",
    "train_barrier", "test_barrier", "train_loss_barrier", "test_loss_barrier",
    "train_error_a", "train_error_b", "test_error_a", "test_error_b", "test_error_max",
)
INTERPOLATION_COLUMNS = (
    "trial", "level", "variant", "weights_remaining_percent", "rewind_step",
    "alpha", "train_error", "test_error", "train_loss", "test_loss",
)


def subnetwork_variants() -> tuple[str, ...]:
    """The variants whose masks the analysis takes: the IMP family's own masks whose survivors start from W_k
    (iterative_reset, oneshot_reset, random_pruning)."""
    return variants_where(family="imp", same_mask=False, rewound=True)


@dataclass(frozen=True)
class StabilitySettings:
    """What a stability analysis of a run directory measures. Steps are strings like '500it' or '2ep'."""

    rewind_steps: tuple[str, ...] = ("0it",)  # k: copies start from the dense run's weights after k steps
    levels: tuple[int, ...] | None = None  # pruning levels (0 = dense); None: every level with a mask
    trials: tuple[int, ...] | None = None  # None: every trial whose dense run has started
    variant: str = field(default_factory=winning_ticket)  # whose masks: one of `subnetwork_variants()`
    points: int = DEFAULT_POINTS  # evaluation points on the linear path, both ends included
    train_examples: int | None = None  # train error on the first N training examples (None: all)
    test_examples: int | None = None  # test error on the first N test examples (None: all)
    batchnorm_examples: int | None = None  # BatchNorm statistics from the first N training examples (None: all)
    batchnorm_batch_size: int = 1000
    all_parameters: bool = False  # distances over every parameter instead of the prunable weights
    restore_optimizer: bool = True  # copies start with the dense run's optimizer state at step k

    def validate(self) -> "StabilitySettings":
        if not self.rewind_steps:
            raise ConfigError("rewind steps are empty; give at least one, e.g. 0it")
        for text in self.rewind_steps:
            parse_step(text, iterations_per_epoch=1)
            check_step_unit("--rewind", text)
        if self.variant not in subnetwork_variants():
            raise ConfigError(f"unknown variant {self.variant!r}; allowed: {', '.join(subnetwork_variants())}")
        interpolation_alphas(self.points)
        for label, value in (("train examples", self.train_examples), ("test examples", self.test_examples),
                             ("batchnorm examples", self.batchnorm_examples)):
            if value is not None and value < 1:
                raise ConfigError(f"{label} {value} must be >= 1 or unset")
        if self.batchnorm_batch_size < 2:
            raise ConfigError(f"batchnorm batch size {self.batchnorm_batch_size} must be >= 2")
        if any(level < 0 for level in self.levels or ()) or any(trial < 0 for trial in self.trials or ()):
            raise ConfigError("levels and trials must be >= 0")
        return self


@dataclass(frozen=True)
class StabilityResult:
    """Rows of stability.csv and interpolation.csv, the files written, and how many copies this call trained."""

    run_dir: Path
    rows: list[dict]
    interpolation_rows: list[dict]
    files: dict[str, Path]
    trained_copies: int


def load_run(
    run_dir: str | Path, *, model: nn.Module | None = None, data: TaskData | None = None, device: str = "cpu",
    checkpoint_interval_s: float = 30.0,
) -> ExperimentContext:
    """The context of an existing run directory: its config, its data, and its seeded model factory.

    Runs made with a custom model or custom data need the same `model` (architecture) and `data` again.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise TicketlabError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    config = config_from_dict(read_json(run_dir / "config.json")["config"])
    if config.model.name.startswith("custom:") and model is None:
        raise ConfigError(f"run {run_dir} used a custom model ({config.model.name}); pass the same model")
    if config.data.name.startswith("custom:") and data is None:
        raise ConfigError(f"run {run_dir} used custom data; pass the same data splits")
    torch_device = resolve_device(device)
    task = load_task(config.task)
    splits = (data if data is not None else task.bind_run(load_task_data(task, config), run_dir)).to(torch_device)
    return ExperimentContext(
        config=config, run_dir=run_dir, data=splits, make_model=model_factory(config, splits, model, task),
        device=torch_device, checkpoint_interval_s=checkpoint_interval_s, task=task,
    )


def stability_analysis(
    run_dir: str | Path,
    settings: StabilitySettings = StabilitySettings(),
    *,
    model: nn.Module | None = None,
    data: TaskData | None = None,
    device: str = "cpu",
    augment: Callable | None = None,
    progress: bool = True,
    figures: bool = True,
    population: int = 1,
    workers: int = 1,
    checkpoint_interval_s: float = 30.0,
) -> StabilityResult:
    """Data-order stability, pruning stability and instability of a run's dense network and subnetworks.

    For every trial, rewind step k and level in `settings`, trains (or reuses) two copies from W_k (masked by
    the level's mask) with data orders 0 and 1, then writes ``analysis/stability/stability.csv`` (one row per
    trial, level, k), ``interpolation.csv`` (error along the path) and the figures. The subnetworks keep the
    run's masks (found with the run's own prune.rewind); only the weights they restart from change with k.
    `model`/`data` are needed again for runs made with a custom model or data. Copies get the same per-step
    randomness as the run's jobs (augmentation, dropout seeds); `augment` (train_model's per-step hook)
    overrides it.

    How the copies train, never what they compute: `population` copies at a time stacked into one network where
    the task stacks the model (1: one at a time, the reference path), in `workers` processes of CPU cores /
    workers threads each (built-in models and data only: a worker rebuilds the run from its directory), with a
    resume checkpoint at most every `checkpoint_interval_s` seconds.
    """
    settings = settings.validate()
    check_copy_execution(population, workers, checkpoint_interval_s, custom=(model, data, augment))
    ctx = load_run(run_dir, model=model, data=data, device=device, checkpoint_interval_s=checkpoint_interval_s)
    with run_lock(ctx.run_dir):  # it trains into the run directory: one writer at a time, as for `find`
        return _stability_analysis(ctx, settings, augment, progress, figures, population, workers)


def _stability_analysis(ctx: ExperimentContext, settings: StabilitySettings, augment: Callable | None,
                        progress: bool, figures: bool, population: int, workers: int) -> StabilityResult:
    out_dir = ctx.run_dir / STABILITY_DIR
    rewind_steps = _rewind_steps(ctx, settings)
    plan = _plan(ctx, settings)  # trial -> {level: mask}
    template = ctx.make_model(0)
    names = [name for name, _ in template.named_parameters()] if settings.all_parameters else list(
        ctx.task.prunable(template))

    copies = [
        (trial, step, level, index)
        for trial, levels in plan.items() for step in rewind_steps for level in levels for index in (0, 1)
    ]
    pending = [copy for copy in copies if not (_copy_job_dir(out_dir, settings, *copy) / RESULT_FILE).exists()]
    left = set(pending)
    # populations are cut from every copy (never from those left), so a resumed run re-forms the ones it started
    size = copies_per_population(ctx, template, population) if pending else 1
    batches = [[_copy_job(ctx, out_dir, settings, *copy) for copy in copies[start:start + size] if copy in left]
               for start in range(0, len(copies), size)]
    batches = [batch for batch in batches if batch]
    steps_left = sum(ctx.total_steps - step for _, step, _, _ in pending)
    bar = progress_bar(steps_left, enabled=progress and steps_left > 0, label="stability copies")
    try:
        for trial in sorted({trial for trial, _, _, _ in pending}):
            rewind_points(ctx, out_dir, trial, rewind_steps, augment)  # the starting points W_k, replayed once
        train_copy_batches(ctx, batches, workers, augment=augment, bar=bar)
    finally:
        bar.close()

    rows, interpolation_rows = [], []
    for trial, levels in plan.items():
        for level, mask in levels.items():
            percent = remaining_percent(mask)
            for step in rewind_steps:
                row, path = _measure(ctx, out_dir, settings, template, names, trial, step, level, mask)
                rows.append({"weights_remaining_percent": percent, **row})
                base = {key: rows[-1][key] for key in ("trial", "level", "variant", "weights_remaining_percent",
                                                       "rewind_step")}
                for point in path.rows():
                    interpolation_rows.append(base | {key: point[key] for key in INTERPOLATION_COLUMNS[5:]})
    files = {
        "stability_csv": write_csv(out_dir / "stability.csv", STABILITY_COLUMNS, rows),
        "interpolation_csv": write_csv(out_dir / "interpolation.csv", INTERPOLATION_COLUMNS, interpolation_rows),
    }
    if figures:
        from ticketlab.analysis.figures import draw_stability_figures

        files.update(draw_stability_figures(rows, interpolation_rows, out_dir, title=ctx.run_dir.name))
    return StabilityResult(ctx.run_dir, rows, interpolation_rows, files, trained_copies=len(pending))


# --- internals -----------------------------------------------------------------------------------


def _rewind_steps(ctx: ExperimentContext, settings: StabilitySettings) -> list[int]:
    steps = sorted({parse_step(text, ctx.steps_per_epoch) for text in settings.rewind_steps})
    for step in steps:
        if step >= ctx.total_steps:
            raise ConfigError(f"rewind step {step} must be below the run's {ctx.total_steps} training steps")
    return steps


def _plan(ctx: ExperimentContext, settings: StabilitySettings) -> dict[int, dict[int, dict[str, torch.Tensor]]]:
    """trial -> level -> mask for every (trial, level) analysed; level 0 (the dense network) is always there."""
    trials = settings.trials
    if trials is None:
        trials = tuple(t for t in range(ctx.config.trials) if dense_init_path(ctx, t).exists())
        if not trials:
            raise TicketlabError(f"run {ctx.run_dir} has no started dense run; run `ticketlab find` first")
    plan = {}
    for trial in trials:
        if not dense_init_path(ctx, trial).exists():
            raise ConfigError(f"trial {trial} has no dense run in {ctx.run_dir}")
        available = {0: None}
        for level_dir in sorted((ctx.run_dir / f"trial_{trial}").glob("level_*")):
            match = re.fullmatch(r"level_(\d+)", level_dir.name)
            if match and int(match.group(1)) > 0 and (level_dir / settings.variant / "mask.safetensors").exists():
                available[int(match.group(1))] = level_dir / settings.variant / "mask.safetensors"
        levels = sorted(set(settings.levels or available) | {0})
        missing = [level for level in levels if level not in available]
        if missing:
            raise ConfigError(f"trial {trial} has no {settings.variant} mask at level {missing[0]}; "
                              f"levels with one: {', '.join(map(str, sorted(available)))}")
        dense = full_masks(ctx.task.prunable(ctx.make_model(0)))
        plan[trial] = {
            level: dense if level == 0 else {n: m.float() for n, m in load_tensors(available[level]).items()}
            for level in levels
        }
    return plan


def _copy_job_dir(out_dir: Path, settings: StabilitySettings, trial: int, step: int, level: int, index: int) -> Path:
    return _copy_dir(out_dir, settings, trial, step, level) / f"copy_{index}"


def _copy_job(ctx: ExperimentContext, out_dir: Path, settings: StabilitySettings, trial: int, step: int, level: int,
              index: int) -> CopyJob:
    """Copy `index` of (trial, k, level): W_k masked by the level's mask (its plan's file), with its data order."""
    weights, optimizer = rewind_point_files(ctx, out_dir, trial, step)
    mask = None if level == 0 else JobKey(trial, level, settings.variant).directory(ctx.run_dir) / "mask.safetensors"
    return CopyJob(
        job_dir=str(_copy_job_dir(out_dir, settings, trial, step, level, index)), weights=str(weights),
        optimizer=str(optimizer) if optimizer is not None and settings.restore_optimizer else None,
        mask=None if mask is None else str(mask), data_seed=copy_data_seed(ctx.config, trial, index),
        start_step=step,
    )


def _copy_dir(out_dir: Path, settings: StabilitySettings, trial: int, step: int, level: int) -> Path:
    rewind = f"rewind_{step:07d}" + ("" if settings.restore_optimizer else "_fresh_optimizer")
    network = DENSE if level == 0 else settings.variant
    return out_dir / "copies" / f"trial_{trial}" / rewind / f"level_{level:02d}_{network}"


def _measure(ctx, out_dir, settings, template, names, trial, step, level, mask) -> tuple[dict, PathEvaluation]:
    pair_dir = _copy_dir(out_dir, settings, trial, step, level)
    state_a = load_tensors(pair_dir / "copy_0" / "weights_final.safetensors")
    state_b = load_tensors(pair_dir / "copy_1" / "weights_final.safetensors")
    data_order = weight_distance(state_a, state_b, names=names, masks=mask)
    row = {
        "trial": trial, "level": level, "variant": DENSE if level == 0 else settings.variant, "rewind_step": step,
        "data_order_l2": data_order.l2, "data_order_relative": data_order.relative,
        "data_order_angle_deg": data_order.angle_degrees,
    }
    if level > 0:  # the full network trained from W_k with copy 0's data order, seen through the mask
        dense_dir = _copy_dir(out_dir, settings, trial, step, 0)
        dense = load_tensors(dense_dir / "copy_0" / "weights_final.safetensors")
        pruning = weight_distance(dense, state_a, names=names, masks=mask)
        row |= {"pruning_l2": pruning.l2, "pruning_relative": pruning.relative,
                "pruning_angle_deg": pruning.angle_degrees}
    path = _path(ctx, settings, template, pair_dir, state_a, state_b)
    row |= {
        "train_barrier": path.barriers["train"], "test_barrier": path.barriers["test"],
        "train_loss_barrier": path.loss_barriers()["train"], "test_loss_barrier": path.loss_barriers()["test"],
        "train_error_a": path.errors["train"][0], "train_error_b": path.errors["train"][-1],
        "test_error_a": path.errors["test"][0], "test_error_b": path.errors["test"][-1],
        "test_error_max": max(path.errors["test"]),
    }
    return row, path


def _path(ctx, settings, template, pair_dir, state_a, state_b) -> PathEvaluation:
    """The path evaluation, cached in the pair's directory under a name holding every evaluation setting."""
    def count(value):
        return "all" if value is None else str(value)

    cache = pair_dir / (
        f"path_{settings.points}pts_train-{count(settings.train_examples)}_test-{count(settings.test_examples)}"
        f"_bn-{count(settings.batchnorm_examples)}x{settings.batchnorm_batch_size}.json"
    )
    if cache.exists():
        return PathEvaluation.from_dict(read_json(cache))
    labelled = ctx.task.labelled_examples
    if labelled is None or labelled(ctx.data, "train", None) is None:
        # tasks without labelled tensors in memory, and streamed image folders: each split goes through the task
        batchnorm_inputs = None
        if has_batchnorm(template):
            batchnorm_inputs = first_inputs(ctx.data, "train", settings.batchnorm_examples)
        path = evaluate_path_with(template, state_a, state_b, _task_loss_and_error(ctx), ("train", "test"),
                                  points=settings.points, device=ctx.device, batchnorm_inputs=batchnorm_inputs,
                                  batchnorm_batch_size=settings.batchnorm_batch_size)
        write_json(cache, path.to_dict())
        return path
    splits = {"train": labelled(ctx.data, "train", settings.train_examples),
              "test": labelled(ctx.data, "test", settings.test_examples)}
    path = evaluate_path(
        template, state_a, state_b, splits, points=settings.points,
        batchnorm_inputs=labelled(ctx.data, "train", settings.batchnorm_examples)[0],
        batchnorm_batch_size=settings.batchnorm_batch_size,
    )
    write_json(cache, path.to_dict())
    return path


def _task_loss_and_error(ctx: ExperimentContext) -> Callable[[nn.Module, str], tuple[float, float]]:
    """A task's (loss, error) of one network on a split: the error is 1 - accuracy for an accuracy metric, else the
    primary metric itself (perplexity, bits per character: the barrier is then in the metric's units)."""
    metric = ctx.task.metric(ctx.config)

    def measure(network: nn.Module, split: str) -> tuple[float, float]:
        values = ctx.task.evaluate(network, ctx.data, split)
        error = 1.0 - values[metric.name] if metric.name == "accuracy" else values[metric.name]
        return values["loss"], error

    return measure

