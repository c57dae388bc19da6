"""Stability of training to data order and to pruning (Frankle et al. 2019), and instability vs rewind point.

From the same starting weights W_k (the dense run's weights after k steps; W_0 is its initialization), copies
are trained from step k to the end of training (train.steps) with different data orders:

* data-order stability: the distance between two copies trained with data orders 0 and 1;
* pruning stability: the distance between a subnetwork m * W_k trained in isolation and the full network
  trained from W_k with the same data order, masked by m;
* instability: the error barrier on the linear path between the two copies (see `connectivity`).

Distances are over the prunable weights (Linear/Conv/Embedding) restricted to the subnetwork's mask, or over
every parameter with `all_parameters`. Each is reported three ways (see `WeightDistance`): the raw L2 distance,
the L2 distance divided by the mean L2 norm of the two weight vectors (``relative``, in [0, 2]), and the angle
between the two vectors in degrees.

Over a run directory the trained copies are stored in ``RUN_DIR/analysis/stability/copies/...`` (weights,
metrics, result.json), so re-running an analysis reuses them and a killed run resumes.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

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
from ticketlab.analysis.masks import write_csv
from ticketlab.config import ExperimentConfig, TrainConfig, check_step_unit, config_from_dict, parse_step
from ticketlab.data import DataSplits
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.lottery.experiment import model_factory, resolve_device
from ticketlab.lottery.integrity import run_lock
from ticketlab.lottery.jobs import DENSE, ExperimentContext, JobKey
from ticketlab.pruning import full_masks, prunable_weights, remaining_percent
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, read_json, save_tensors, write_json
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.training.loop import TrainingInterrupted, first_inputs, train_model
from ticketlab.training.optim import optimizer_tensors

STABILITY_DIR = Path("analysis") / "stability"
RESULT_FILE = "result.json"
SUBNETWORK_VARIANTS = ("iterative_reset", "oneshot_reset", "random_pruning")  # masks whose survivors take W_k
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


# --- distances between weight vectors ------------------------------------------------------------


@dataclass(frozen=True)
class WeightDistance:
    """||a - b||_2 over the compared entries, normalized three ways.

    ``relative`` = ||a - b|| / ((||a|| + ||b||) / 2): 0 for identical vectors, at most 2 (triangle inequality).
    ``angle_degrees`` = arccos(<a, b> / (||a|| ||b||)) in degrees (nan if a vector is zero).
    """

    l2: float
    relative: float
    angle_degrees: float
    norm_a: float
    norm_b: float
    entries: int  # how many weights were compared


def weight_distance(
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    *,
    names: Iterable[str] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> WeightDistance:
    """Distance between two state dicts over the tensors `names` (default: the masks' names, else every float
    tensor of `state_a`); tensors with a mask are compared only where the mask is 1. Sums are in float64.
    """
    if names is None:
        names = list(masks) if masks is not None else [n for n, v in state_a.items() if v.is_floating_point()]
    difference = norm_a = norm_b = dot = torch.zeros((), dtype=torch.float64)
    entries = 0
    for name in names:
        if name not in state_a or name not in state_b:
            raise ConfigError(f"tensor {name!r} is missing from one of the state dicts")
        a, b = state_a[name].detach().double().cpu(), state_b[name].detach().double().cpu()
        if a.shape != b.shape:
            raise ConfigError(f"{name} has shape {tuple(a.shape)} in one state, {tuple(b.shape)} in the other")
        if masks is not None and name in masks:
            keep = masks[name].cpu() > 0
            a, b = a[keep], b[keep]
        difference = difference + ((a - b) ** 2).sum()
        norm_a, norm_b, dot = norm_a + (a * a).sum(), norm_b + (b * b).sum(), dot + (a * b).sum()
        entries += a.numel()
    l2, size_a, size_b = math.sqrt(difference), math.sqrt(norm_a), math.sqrt(norm_b)
    mean_norm = (size_a + size_b) / 2.0
    relative = l2 / mean_norm if mean_norm > 0 else (0.0 if l2 == 0 else math.inf)
    if size_a > 0 and size_b > 0:
        cosine = max(-1.0, min(1.0, float(dot) / (size_a * size_b)))
        angle = 0.0 if l2 == 0 else math.degrees(math.acos(cosine))
    else:
        angle = math.nan
    return WeightDistance(l2, relative, angle, size_a, size_b, entries)


# --- training copies -----------------------------------------------------------------------------


def train_from(
    model: nn.Module,
    data: DataSplits,
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
) -> dict[str, torch.Tensor]:
    """Train `model` in place from its current weights, taken to be those after `start_step` steps, to
    `total_steps` (default: train_config.steps) with data order `data_seed`; returns the final state (CPU).

    With `job_dir`, a finished run (result.json present) is loaded instead of retrained and a killed one
    resumes. `masks` default to the dense network (all ones); `augment` is train_model's per-step hook. `train`
    and `prunable` are the task's (default: classification's `train_model` and Linear/Conv/Embedding weights).
    """
    job_dir = Path(job_dir) if job_dir is not None else None
    if job_dir is not None and (job_dir / RESULT_FILE).exists():
        final = load_tensors(job_dir / "weights_final.safetensors")
        model.load_state_dict(final)
        return final
    masks = dict(masks) if masks is not None else full_masks(prunable(model))
    result = train(
        model, data, train_config, masks=masks, data_seed=data_seed, start_step=start_step,
        total_steps=total_steps, optimizer_state=optimizer_state, job_dir=job_dir, augment=augment,
        on_progress=on_progress,
    )
    final = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    if job_dir is not None:
        save_tensors(job_dir / "weights_final.safetensors", final)
        write_json(job_dir / RESULT_FILE, {"data_seed": data_seed, "start_step": start_step, **result.to_dict()})
    return final


@dataclass(frozen=True)
class CopyPair:
    """Two copies trained from one starting point with different data orders, and how far apart they ended."""

    state_a: dict[str, torch.Tensor] = field(repr=False)
    state_b: dict[str, torch.Tensor] = field(repr=False)
    distance: WeightDistance
    path: PathEvaluation


def data_order_stability(
    model: nn.Module,
    data: DataSplits,
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
    them on the whole train and test sets. `job_dirs` store the copies for reuse."""
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


# --- over a run directory ------------------------------------------------------------------------


@dataclass(frozen=True)
class StabilitySettings:
    """What a stability analysis of a run directory measures. Steps are strings like '500it' or '2ep'."""

    rewind_steps: tuple[str, ...] = ("0it",)  # k: copies start from the dense run's weights after k steps
    levels: tuple[int, ...] | None = None  # pruning levels (0 = dense); None: every level with a mask
    trials: tuple[int, ...] | None = None  # None: every trial whose dense run has started
    variant: str = "iterative_reset"  # whose masks: iterative_reset, oneshot_reset or random_pruning
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
        if self.variant not in SUBNETWORK_VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; allowed: {', '.join(SUBNETWORK_VARIANTS)}")
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
    run_dir: str | Path, *, model: nn.Module | None = None, data: DataSplits | None = None, device: str = "cpu"
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
        device=torch_device, task=task,
    )


def stability_analysis(
    run_dir: str | Path,
    settings: StabilitySettings = StabilitySettings(),
    *,
    model: nn.Module | None = None,
    data: DataSplits | None = None,
    device: str = "cpu",
    augment: Callable | None = None,
    progress: bool = True,
    figures: bool = True,
) -> StabilityResult:
    """Data-order stability, pruning stability and instability of a run's dense network and subnetworks.

    For every trial, rewind step k and level in `settings`, trains (or reuses) two copies from W_k (masked by
    the level's mask) with data orders 0 and 1, then writes ``analysis/stability/stability.csv`` (one row per
    trial, level, k), ``interpolation.csv`` (error along the path) and the figures. The subnetworks keep the
    run's masks (found with the run's own prune.rewind); only the weights they restart from change with k.
    `model`/`data` are needed again for runs made with a custom model or data. Copies get the same per-step
    randomness as the run's jobs (augmentation, dropout seeds); `augment` (train_model's per-step hook)
    overrides it.
    """
    settings = settings.validate()
    ctx = load_run(run_dir, model=model, data=data, device=device)
    with run_lock(ctx.run_dir):  # it trains into the run directory: one writer at a time, as for `find`
        return _stability_analysis(ctx, settings, augment, progress, figures)


def _stability_analysis(ctx: ExperimentContext, settings: StabilitySettings, augment: Callable | None,
                        progress: bool, figures: bool) -> StabilityResult:
    out_dir = ctx.run_dir / STABILITY_DIR
    rewind_steps = _rewind_steps(ctx, settings)
    plan = _plan(ctx, settings)  # trial -> {level: mask}
    template = ctx.make_model(0)
    names = [name for name, _ in template.named_parameters()] if settings.all_parameters else list(
        ctx.task.prunable(template))

    pending = [
        (trial, step, level, index)
        for trial, levels in plan.items() for step in rewind_steps for level in levels for index in (0, 1)
        if not (_copy_dir(out_dir, settings, trial, step, level) / f"copy_{index}" / RESULT_FILE).exists()
    ]
    bar = _progress_bar(sum(ctx.total_steps - step for _, step, _, _ in pending), progress)
    try:
        for trial in sorted({trial for trial, _, _, _ in pending}):
            starts = _rewind_points(ctx, out_dir, trial, rewind_steps, augment)
            for _, step, level, index in (job for job in pending if job[0] == trial):
                weights, optimizer_state = starts[step]
                network = ctx.make_model(0)
                network.load_state_dict(weights)
                train_from(
                    network.to(ctx.device), ctx.data, ctx.config.train, masks=plan[trial][level], start_step=step,
                    total_steps=ctx.total_steps,
                    optimizer_state=optimizer_state if settings.restore_optimizer else None,
                    data_seed=copy_data_seed(ctx.config, trial, index),
                    job_dir=_copy_dir(out_dir, settings, trial, step, level) / f"copy_{index}",
                    augment=_per_step_hook(ctx.config, network, augment), on_progress=bar.update,
                    train=ctx.task.train, prunable=ctx.task.prunable,
                )
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


def copy_data_seed(config: ExperimentConfig, trial: int, index: int) -> int:
    """Data-order seed of copy 0 or 1: the same for every level and rewind step, so the subnetwork's copy 0
    and the full network's copy 0 see the same batches (pruning stability)."""
    return derive_seed(config.seed, trial, "stability_data_order", index)


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
        trials = tuple(t for t in range(ctx.config.trials) if _dense_init_path(ctx, t).exists())
        if not trials:
            raise TicketlabError(f"run {ctx.run_dir} has no started dense run; run `ticketlab find` first")
    plan = {}
    for trial in trials:
        if not _dense_init_path(ctx, trial).exists():
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


def _dense_init_path(ctx: ExperimentContext, trial: int) -> Path:
    return JobKey(trial, 0, DENSE).directory(ctx.run_dir) / "weights_init.safetensors"


def _rewind_points(ctx: ExperimentContext, out_dir: Path, trial: int, steps: list[int], augment) -> dict:
    """step -> (weights, optimizer state or None) of the dense run after that many steps, replayed once.

    The dense run is replayed from its stored initialization with its own data order and schedule, so the
    weights equal the original run's at that step (its stored weights_rewind, when k is the run's rewind).
    """
    init = load_tensors(_dense_init_path(ctx, trial))
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
                augment=_per_step_hook(ctx.config, model, augment),
            )
        except TrainingInterrupted:
            pass
    for step in steps:
        if step > 0:
            step_dir = folder / f"step_{step:07d}"
            points[step] = (load_tensors(step_dir / "weights.safetensors"),
                            load_tensors(step_dir / "optimizer.safetensors") or None)
    return points


def _per_step_hook(config: ExperimentConfig, model: nn.Module, augment: Callable | None) -> Callable | None:
    """The per-step hook the run's own jobs use for `model` (augmentation, seeded dropout), unless given one."""
    if augment is not None:
        return augment
    return load_task(config.task).per_step_hook(config, model)


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
    data = ctx.data
    if ctx.task.name != "classification" or not isinstance(data, DataSplits):
        # other tasks, and image folders (streamed: each split is evaluated through the task)
        batchnorm_inputs = None
        if has_batchnorm(template):
            batchnorm_inputs = first_inputs(data, "train", settings.batchnorm_examples)
        path = evaluate_path_with(template, state_a, state_b, _task_loss_and_error(ctx), ("train", "test"),
                                  points=settings.points, device=ctx.device, batchnorm_inputs=batchnorm_inputs,
                                  batchnorm_batch_size=settings.batchnorm_batch_size)
        write_json(cache, path.to_dict())
        return path
    splits = {
        "train": (data.x_train[: settings.train_examples], data.y_train[: settings.train_examples]),
        "test": (data.x_test[: settings.test_examples], data.y_test[: settings.test_examples]),
    }
    path = evaluate_path(
        template, state_a, state_b, splits, points=settings.points,
        batchnorm_inputs=data.x_train[: settings.batchnorm_examples],
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


class _NoBar:
    def update(self, count: int = 1) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="it", unit_scale=True, dynamic_ncols=True, file=sys.stderr,
                desc="stability copies")
