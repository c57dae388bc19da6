"""The early-bird search job (You et al. 2020) and the early-bird tickets drawn from it.

Per trial, `level_00/early_bird_search` trains the dense network again from θ0 with the dense job's data order and
schedule, and every `prune.early_bird_every` steps draws each level's mask (the pruning strategy on the current
weights, at the level's keep counts; for `prune.early_bird_criterion channels`, also the BatchNorm-scale channel
mask at the level's keep fraction). A level's early-bird ticket is detected at the first check where the newest of
the last `prune.early_bird_window` masks is within `prune.early_bird_threshold` (normalized Hamming distance) of
every other; the search saves that step's weights and mask, and stops once every level is detected (or at the end
of training, where undetected levels take the final weights). What it records, in its result.json: each level's
detection step, the training saved (1 - detection step / training steps) and the distance history.

The search trains without checkpoints: a killed search starts again from θ0 (it is one partial dense run), and a
finished one is never repeated. The `early_bird` variant trains the level's mask from the detection-point weights
to the end of the schedule (fresh optimizer state, as a rewound ticket); `early_bird_reset` from θ0 / θk.
The variants themselves are declared in `ticketlab.lottery.variants.early_bird`; this module is their runner and
knows no variant name (each function is given the search job's key).
"""

from __future__ import annotations

import csv
import io
import time

import torch

from ticketlab.config import parse_step
from ticketlab.errors import ConfigError
from ticketlab.lottery.integrity import seal_result
from ticketlab.lottery.context import ExperimentContext, is_done, plan_total, read_result
from ticketlab.lottery.keys import RESULT_FILE, JobKey
from ticketlab.lottery.starts import init_start
from ticketlab.pruning import keep_top, strategy_scores
from ticketlab.pruning.early_bird import EarlyBirdDetector, batchnorm_scales, channel_mask
from ticketlab.seeds import derive_seed
from ticketlab.store import atomic_write_bytes, load_tensors, save_tensors, write_json


class _AllDetected(Exception):
    """Raised from the snapshot hook to end the search's training once every level's ticket is detected."""


def run_early_bird_search(ctx: ExperimentContext, key: JobKey, on_progress=None) -> dict:
    """Train the dense network from θ0 until every level's early-bird mask is detected; returns the record."""
    started = time.time()
    config, prune = ctx.config, ctx.config.prune
    job_dir = key.directory(ctx.run_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    total = ctx.total_steps
    every = parse_step(prune.early_bird_every, ctx.steps_per_epoch)
    plan = ctx.keep_plan()
    levels = list(range(1, len(plan)))
    model, _, _, _ = init_start(ctx, key.trial)
    prunable = ctx.task.prunable(model)
    all_weights = sum(weight.numel() for weight in prunable.values())
    check_criterion(config, model)
    has_batchnorm = bool(batchnorm_scales(model))
    detectors = {level: EarlyBirdDetector(prune.early_bird_window, prune.early_bird_threshold) for level in levels}
    channel_detectors = {level: EarlyBirdDetector(prune.early_bird_window, prune.early_bird_threshold)
                         for level in levels} if has_batchnorm else {}
    history: dict[int, list] = {level: [] for level in levels}
    found: dict[int, int] = {}

    def save_level(level: int, step: int, trained, mask) -> None:
        state = {name: value.detach().cpu() for name, value in trained.state_dict().items()}
        save_tensors(job_dir / f"weights_level_{level:02d}.safetensors", state, metadata={"step": str(step)})
        save_tensors(job_dir / f"mask_level_{level:02d}.safetensors", {n: m.bool() for n, m in mask.items()})

    def level_masks(trained):
        weights = {name: weight.detach().cpu() for name, weight in ctx.task.prunable(trained).items()}
        scores = strategy_scores(prune.strategy, weights)
        return {level: keep_top(scores, plan[level], n_m=prune.n_m_pattern()) for level in levels}

    def check(step: int, trained, optimizer) -> None:
        masks = level_masks(trained)
        scales = batchnorm_scales(trained) if has_batchnorm else {}
        for level in levels:
            if level in found:
                continue
            entry = {"step": step, "weights_distance": detectors[level].observe(masks[level])}
            if scales:
                fraction = plan_total(plan[level]) / all_weights
                entry["channels_distance"] = channel_detectors[level].observe(channel_mask(scales, fraction))
            history[level].append(entry)
            chosen = channel_detectors if prune.early_bird_criterion == "channels" else detectors
            if chosen[level].detected:
                found[level] = step
                save_level(level, step, trained, masks[level])
        if len(found) == len(levels):
            raise _AllDetected

    stopped_at = total
    try:
        ctx.task.train(
            model.to(ctx.device), ctx.data, config.train, masks={n: torch.ones_like(w) for n, w in prunable.items()},
            data_seed=derive_seed(config.seed, key.trial, "data_order"), start_step=0, total_steps=total,
            job_dir=None, snapshot_steps=tuple(range(every, total + 1, every)), on_snapshot=check,
            on_progress=on_progress, augment=ctx.task.per_step_hook(config, model))
    except _AllDetected:
        stopped_at = max(found.values())
    if len(found) < len(levels):  # undetected levels draw their ticket from the fully trained weights
        masks = level_masks(model)
        for level in levels:
            if level not in found:
                save_level(level, total, model, masks[level])
    counts = {name: weight.numel() for name, weight in prunable.items()}
    record = {
        "trial": key.trial, "level": 0, "variant": key.variant, "weights_remaining_percent": 100.0,
        "layer_remaining": {name: [count, count] for name, count in counts.items()},
        "total_steps": total, "check_every_steps": every, "criterion": prune.early_bird_criterion,
        "window": prune.early_bird_window, "threshold": prune.early_bird_threshold,
        "stopped_at_step": stopped_at, "training_saved_fraction": 1.0 - stopped_at / total,
        "levels": {str(level): {"detected": level in found, "detection_step": found.get(level, total),
                                "weights_remaining_percent": 100.0 * plan_total(plan[level]) / all_weights,
                                "training_saved_fraction": 1.0 - found.get(level, total) / total,
                                "history": history[level]} for level in levels},
        "wall_time_s": time.time() - started,
    }
    record = seal_result(job_dir, record)
    write_json(job_dir / RESULT_FILE, record)
    return record


def check_criterion(config, model) -> None:
    """ConfigError for `prune.early_bird_criterion channels` on a model without BatchNorm layers."""
    if config.prune.early_bird_criterion == "channels" and not batchnorm_scales(model):
        raise ConfigError("prune.early_bird_criterion 'channels' needs BatchNorm layers, which "
                          f"{type(model).__name__} does not have; use 'weights'")


def detection_step(ctx: ExperimentContext, search: JobKey, level: int) -> int:
    """The step at which the level's early-bird ticket was detected by the `search` job (the training steps when it
    was not)."""
    return int(read_result(ctx, search)["levels"][str(level)]["detection_step"])


def early_bird_mask(ctx: ExperimentContext, search: JobKey, level: int) -> dict[str, torch.Tensor]:
    """The level's mask the `search` job stored at detection."""
    path = search.directory(ctx.run_dir) / f"mask_level_{level:02d}.safetensors"
    return {name: mask.float() for name, mask in load_tensors(path).items()}


def detection_start(ctx: ExperimentContext, search: JobKey, level: int):
    """(model with the detection-point weights, detection step, no optimizer state, training steps)."""
    model = ctx.make_model(0)
    path = search.directory(ctx.run_dir) / f"weights_level_{level:02d}.safetensors"
    model.load_state_dict(load_tensors(path))
    return model, detection_step(ctx, search, level), None, ctx.total_steps


def write_early_bird_csvs(ctx: ExperimentContext, searches) -> None:
    """early_bird.csv (per trial and level: detection step, training saved) and early_bird_distances.csv (the
    mask distance at every check), from the finished jobs among the `searches`; nothing when none is finished."""
    searches = [key for key in searches if is_done(ctx, key)]
    if not searches:
        return
    summary, distances = io.StringIO(), io.StringIO()
    summary_writer, distance_writer = csv.writer(summary, lineterminator="\n"), csv.writer(distances, lineterminator="\n")
    summary_writer.writerow(["trial", "level", "weights_remaining_percent", "detected", "detection_step",
                             "total_steps", "training_saved_percent", "search_stopped_at_step", "search_wall_time_s"])
    distance_writer.writerow(["trial", "level", "step", "weights_distance", "channels_distance"])
    for key in searches:
        record = read_result(ctx, key)
        for level, entry in sorted(record["levels"].items(), key=lambda item: int(item[0])):
            summary_writer.writerow([key.trial, level, round(entry["weights_remaining_percent"], 4), entry["detected"],
                                     entry["detection_step"], record["total_steps"],
                                     round(100 * entry["training_saved_fraction"], 2), record["stopped_at_step"],
                                     round(record["wall_time_s"], 2)])
            for point in entry["history"]:
                distance_writer.writerow([key.trial, level, point["step"], point["weights_distance"],
                                          point.get("channels_distance")])
    atomic_write_bytes(ctx.run_dir / "early_bird.csv", summary.getvalue().encode())
    atomic_write_bytes(ctx.run_dir / "early_bird_distances.csv", distances.getvalue().encode())
