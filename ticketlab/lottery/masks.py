"""A job's mask, computed once by its variant and stored in its directory, and the building blocks the variants'
mask rules share: prune a parent job's trained weights, score the dense run's final weights, match another mask's
per-layer counts at random — each over single weights or over channel groups (prune.unit 'channel'); masks of
single weights keep the N:M pattern of prune.n_m when it is set."""

from __future__ import annotations

import time

import torch

from ticketlab.errors import IntegrityError
from ticketlab.lottery.context import ExperimentContext, plan_total
from ticketlab.lottery.keys import DENSE, MASK_COST_FILE, JobKey
from ticketlab.lottery.variants import variant_named
from ticketlab.pruning import full_masks, keep_top, random_scores, remaining_counts, strategy_scores
from ticketlab.pruning.channels import (
    alive_channels,
    channel_groups,
    channel_masks,
    channel_scores,
    keep_channels,
    random_channel_scores,
)
from ticketlab.pruning.densities import layer_keep_counts
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, save_tensors, set_aside, write_json


def job_mask(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """The job's mask, computed once from its inputs and stored in its directory (idempotent; a stored mask that
    is damaged is set aside and computed again)."""
    path = key.directory(ctx.run_dir) / "mask.safetensors"
    if path.exists():
        try:
            return {name: mask.float() for name, mask in load_tensors(path).items()}
        except IntegrityError as error:
            set_aside(path, f"{error}; computing the mask again")
    started = time.perf_counter()
    mask = compute_mask(ctx, key)
    save_tensors(path, {name: value.bool() for name, value in mask.items()})
    write_json(path.parent / MASK_COST_FILE, {"mask_time_s": time.perf_counter() - started})
    return mask


def compute_mask(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """The mask the job's variant draws (level 0: every weight), over weights or channel groups."""
    if key.level == 0:
        return every_weight(ctx)
    variant = variant_named(key.variant)
    if ctx.config.prune.unit == "channel":
        return variant.channel_mask(ctx, key)
    return variant.mask(ctx, key)


def every_weight(ctx: ExperimentContext) -> dict[str, torch.Tensor]:
    """The dense mask: every prunable weight kept."""
    return full_masks(ctx.task.prunable(ctx.make_model(0)))


def prune_from(ctx: ExperimentContext, parent: JobKey, keep) -> dict[str, torch.Tensor]:
    """Prune the parent job's trained weights, among the weights its mask left, down to `keep`."""
    scores = strategy_scores(ctx.config.prune.strategy, final_prunable_weights(ctx, parent))
    return keep_top(scores, keep, eligible=job_mask(ctx, parent), n_m=ctx.config.prune.n_m_pattern())


def prune_dense(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """One shot: the dense run's final weights pruned to the level's keep counts."""
    dense_final = final_prunable_weights(ctx, JobKey(key.trial, 0, DENSE))
    return keep_top(strategy_scores(ctx.config.prune.strategy, dense_final), ctx.keep_plan()[key.level],
                    n_m=ctx.config.prune.n_m_pattern())


def random_like(ctx: ExperimentContext, key: JobKey, ticket: JobKey) -> dict[str, torch.Tensor]:
    """A random mask with the per-layer survivor counts of `ticket`'s mask (seeded by trial and level), or, with
    prune.densities set, with the counts of that layer distribution at the level's overall density."""
    seed = derive_seed(ctx.config.seed, key.trial, "random_mask", key.level)
    if ctx.config.prune.densities is not None:
        return random_at_densities(ctx, key.level, ctx.config.prune.densities, seed)
    ticket_counts = remaining_counts(job_mask(ctx, ticket))
    shapes = ctx.task.prunable(ctx.make_model(0))
    scores = random_scores(shapes, seed)
    return keep_top(scores, ticket_counts, n_m=ctx.config.prune.n_m_pattern())


def density_counts(ctx: ExperimentContext, level: int, distribution: str) -> dict[str, int]:
    """Weights each layer keeps at the level's overall density (its keep plan's total over all prunable weights),
    spread over the layers by `distribution` ('uniform', 'er', 'erk': `ticketlab.pruning.densities`)."""
    plan = ctx.keep_plan()
    shapes = {name: tuple(weight.shape) for name, weight in ctx.task.prunable(ctx.make_model(0)).items()}
    return layer_keep_counts(shapes, plan_total(plan[level]) / plan_total(plan[0]), distribution)


def random_at_densities(ctx: ExperimentContext, level: int, distribution: str, seed: int) -> dict[str, torch.Tensor]:
    """A random mask (uniform scores from `seed`) with `density_counts` per layer."""
    weights = ctx.task.prunable(ctx.make_model(0))
    return keep_top(random_scores(weights, seed), density_counts(ctx, level, distribution),
                    n_m=ctx.config.prune.n_m_pattern())


def final_prunable_weights(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    final = load_tensors(key.directory(ctx.run_dir) / "weights_final.safetensors")
    names = ctx.task.prunable(ctx.make_model(0))
    return {name: final[name] for name in names}


# --- channel units ---------------------------------------------------------------------------------


def prune_channels_from(ctx: ExperimentContext, key: JobKey, parent: JobKey) -> dict[str, torch.Tensor]:
    """The parent job's trained channels scored (prune.channel_score), among those its mask left, down to the
    level's keep counts."""
    model = ctx.make_model(0)
    groups = channel_groups(model)
    state = load_tensors(parent.directory(ctx.run_dir) / "weights_final.safetensors")
    parent_mask = job_mask(ctx, parent)
    eligible = {group.name: alive_channels(parent_mask, group) for group in groups}
    kept = keep_channels(channel_scores(ctx.config.prune.channel_score, model, state, groups),
                         ctx.keep_plan()[key.level], eligible)
    return channel_masks(model, groups, kept, ctx.task.prunable(model))


def prune_dense_channels(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """One shot over channels: the dense run's final weights' channels, scored, down to the level's keep counts."""
    model = ctx.make_model(0)
    groups = channel_groups(model)
    state = load_tensors(JobKey(key.trial, 0, DENSE).directory(ctx.run_dir) / "weights_final.safetensors")
    kept = keep_channels(channel_scores(ctx.config.prune.channel_score, model, state, groups),
                         ctx.keep_plan()[key.level])
    return channel_masks(model, groups, kept, ctx.task.prunable(model))


def random_channels_like(ctx: ExperimentContext, key: JobKey, ticket: JobKey) -> dict[str, torch.Tensor]:
    """Random channels, as many per group as `ticket`'s mask keeps (seeded by trial and level)."""
    model = ctx.make_model(0)
    groups = channel_groups(model)
    ticket_mask = job_mask(ctx, ticket)
    counts = {group.name: int(alive_channels(ticket_mask, group).sum()) for group in groups}
    seed = derive_seed(ctx.config.seed, key.trial, "random_mask", key.level)
    kept = keep_channels(random_channel_scores(groups, seed), counts)
    return channel_masks(model, groups, kept, ctx.task.prunable(model))
