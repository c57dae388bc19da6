"""The lottery experiment as a graph of training jobs, and how one job is prepared, trained and recorded.

Which jobs a variant needs, its mask, its starting weights and its length come from its `Variant` object in the
registry (`ticketlab.lottery.variants`); this module never tests a variant's name. The job key lives in
`ticketlab.lottery.keys`, the experiment context and the keep plan in `ticketlab.lottery.context`, the masks in
`ticketlab.lottery.masks`, the starting points in `ticketlab.lottery.starts`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ticketlab.errors import ConfigError, TrainingDiverged
from ticketlab.lottery.compact_training import train_as_compact
from ticketlab.lottery.context import ExperimentContext, is_done, read_result
from ticketlab.lottery.graph import plan_graph
from ticketlab.lottery.integrity import seal_result
from ticketlab.lottery.keys import DENSE, MASK_COST_FILE, RESULT_FILE, JobKey
from ticketlab.lottery.masks import compute_mask, job_mask
from ticketlab.lottery.variants import variant_named
from ticketlab.pruning import remaining_counts, remaining_percent
from ticketlab.seeds import derive_seed
from ticketlab.store import read_json, save_tensors, write_json
from ticketlab.training.optim import optimizer_tensors


def job_graph(ctx: ExperimentContext) -> dict[JobKey, tuple[JobKey, ...]]:
    """Every job of the experiment with the jobs whose outputs it reads, in a valid execution order
    (`ticketlab.lottery.graph.plan_graph` at the levels the keep plan reaches)."""
    return plan_graph(ctx.config.variants, ctx.config.trials, ctx.levels)


def check_task_supports(task, variants) -> None:
    """ConfigError (before anything is trained) when a variant needs what the task does not supply."""
    for name in variants:
        variant_named(name).check_task(task)


def job_steps(ctx: ExperimentContext, key: JobKey) -> int:
    """Optimizer steps the job takes (for progress bars)."""
    return variant_named(key.variant).steps(ctx, key)


def write_variant_summaries(ctx: ExperimentContext, graph: dict) -> None:
    """Each variant's own files in the run directory (`Variant.write_summary`), for the variants in the graph."""
    for name in dict.fromkeys(key.variant for key in graph):
        variant_named(name).write_summary(ctx, graph)


# --- running one job -------------------------------------------------------------------------------


@dataclass
class JobStart:
    """Everything a training run of one job starts from (the masked model, its step range, its hooks)."""

    mask: dict[str, torch.Tensor]
    model: nn.Module
    start_step: int
    total_steps: int
    optimizer_state: dict[str, torch.Tensor] | None
    data_seed: int
    snapshot_steps: tuple[int, ...]
    on_snapshot: Callable | None
    augment: Callable | None
    mask_schedule: Callable | None = None  # changes `mask` in place while the job trains (`Variant.mask_schedule`)


def prepare_job(ctx: ExperimentContext, key: JobKey) -> JobStart:
    """Compute the job's mask and masked starting weights (saved as weights_init) and its training hooks. A job
    whose mask changes in training starts from its variant's mask every time (its stored mask is the final one)."""
    variant = variant_named(key.variant)
    mask_schedule = variant.mask_schedule(ctx, key)
    mask = job_mask(ctx, key) if mask_schedule is None else compute_mask(ctx, key)
    model, start_step, optimizer_state, total_steps = variant.start(ctx, key)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in mask.items():
            parameters[name].mul_(value)
    # rewritten at every (re)start, with the same bytes: a damaged copy from an earlier run is never sealed
    save_tensors(key.directory(ctx.run_dir) / "weights_init.safetensors", model.state_dict())
    rewind_points = _rewind_points(ctx, key)
    return JobStart(
        mask=mask,
        model=model,
        start_step=start_step,
        total_steps=total_steps,
        optimizer_state=optimizer_state,
        data_seed=derive_seed(ctx.config.seed, key.trial, "data_order"),
        snapshot_steps=tuple(sorted(rewind_points)),
        on_snapshot=_save_rewind_point(rewind_points) if rewind_points else None,
        augment=ctx.task.per_step_hook(ctx.config, model),
        mask_schedule=mask_schedule,
    )


def finish_job(ctx: ExperimentContext, key: JobKey, start: JobStart, result, **extra) -> dict:
    """Check and save the trained weights, then write result.json (last: it marks the job done), sealed with the
    sha256 of the job's files and of its own numbers."""
    job_dir = key.directory(ctx.run_dir)
    final_state = {name: value.detach().cpu() for name, value in start.model.state_dict().items()}
    _check_finite(ctx, key, final_state, result)
    _check_pruned_weights_are_zero(final_state, start.mask, key)
    if start.mask_schedule is not None:  # the mask in force at the end is the job's mask
        save_tensors(job_dir / "mask.safetensors", {name: value.bool() for name, value in start.mask.items()})
    save_tensors(job_dir / "weights_final.safetensors", final_state)
    counts = remaining_counts(start.mask)
    record = {
        "trial": key.trial,
        "level": key.level,
        "variant": key.variant,
        "metric": ctx.task.metric(ctx.config).name,
        "weights_remaining_percent": remaining_percent(start.mask),
        "layer_remaining": {name: [counts[name], start.mask[name].numel()] for name in start.mask},
        "start_step": start.start_step,
        **_mask_cost(job_dir),
        **extra,
        **result.to_dict(),
    }
    record = seal_result(job_dir, record)
    write_json(job_dir / RESULT_FILE, record)
    return record


def _mask_cost(job_dir: Path) -> dict:
    path = job_dir / MASK_COST_FILE
    try:
        return {"mask_time_s": float(read_json(path)["mask_time_s"])} if path.exists() else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def run_job(ctx: ExperimentContext, key: JobKey, on_progress: Callable[[int], None] | None = None) -> dict:
    """Train one job (resuming a partial run) unless it is done; returns its result record."""
    if is_done(ctx, key):
        return read_result(ctx, key)
    variant = variant_named(key.variant)
    if variant.own_runner:
        if ctx.group is not None:
            print(f"ticketlab: {key.label()} trains on rank 0 alone (the {key.variant} job has its own runner)",
                  file=sys.stderr)
        return variant.run(ctx, key, on_progress=on_progress)
    started = time.time()
    start = prepare_job(ctx, key)
    extra = {} if start.mask_schedule is None else {"mask_schedule": start.mask_schedule}
    if ctx.group is not None:
        if start.mask_schedule is not None:
            raise ConfigError(f"variant {key.variant!r} changes its mask while it trains and does not train "
                              "data-parallel yet; run it without torchrun")
        from ticketlab.lottery.data_parallel import announce_job

        announce_job(ctx.group, start, key)
        extra["group"] = ctx.group
    result = train_as_compact(
        ctx.task.train,
        start.model.to(ctx.device),
        ctx.data,
        variant.train_config(ctx, key),
        masks=start.mask,
        data_seed=start.data_seed,
        start_step=start.start_step,
        total_steps=start.total_steps,
        optimizer_state=start.optimizer_state,
        job_dir=key.directory(ctx.run_dir),
        snapshot_steps=start.snapshot_steps,
        on_snapshot=start.on_snapshot,
        on_progress=on_progress,
        checkpoint_interval_s=ctx.checkpoint_interval_s,
        augment=start.augment,
        **extra,
    )
    if ctx.group is not None:
        from ticketlab.lottery.data_parallel import job_trained

        job_trained(ctx.group)
    return finish_job(ctx, key, start, result, wall_time_s=time.time() - started)


def _rewind_points(ctx: ExperimentContext, key: JobKey) -> dict[int, list[Path]]:
    """Dense job only: step -> dense job directories that receive the weights and optimizer state at that step."""
    if key.variant != DENSE:
        return {}
    points: dict[int, list[Path]] = {}
    targets = [(ctx.rewind_step, ctx.run_dir), *ctx.shared_rewind_runs]
    for step, run_dir in targets:
        if step > 0:
            points.setdefault(step, []).append(key.directory(run_dir))
    return points


def _save_rewind_point(points: dict[int, list[Path]]):
    def save(step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for job_dir in points.get(step, ()):
            metadata = {"step": str(step)}
            save_tensors(job_dir / "weights_rewind.safetensors", model.state_dict(), metadata=metadata)
            save_tensors(job_dir / "optimizer_rewind.safetensors", optimizer_tensors(optimizer), metadata=metadata)

    return save


def _check_finite(ctx: ExperimentContext, key: JobKey, state: dict[str, torch.Tensor], result) -> None:
    """Refuse to record a diverged job (its NaN weights would poison every mask pruned from it); nothing is
    written, so the finished jobs stay and a rerun with stabler settings continues from them."""
    bad = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if not bad:
        return
    train = ctx.config.train
    raise TrainingDiverged(
        f"{key.label()}: training diverged ({bad[0]} holds inf/NaN after step {getattr(result, 'final_iteration', '?')}); "
        f"lower train.lr (now {train.lr:g}) or set train.clip_grad_norm, then run again")


def _check_pruned_weights_are_zero(state: dict[str, torch.Tensor], mask: dict[str, torch.Tensor], key: JobKey) -> None:
    for name, value in mask.items():
        if torch.any(state[name][value == 0] != 0):
            raise RuntimeError(f"{key.label()}: pruned weights of {name} are not zero after training")
