"""The lottery experiment as a graph of training jobs, and how one job computes its mask, start and result.

Every job is identified by (trial, level, variant) and owns one directory of the run:
``trial_{t}/level_{LL}/{variant}/`` holding mask.safetensors, weights_init.safetensors (the weights the job
started from, mask applied), weights_rewind.safetensors (dense job: the weights at the rewind step),
weights_final.safetensors, metrics.jsonl and result.json (written last: its presence means "done"; it records
the sha256 of the other files and of its own numbers, see `ticketlab.lottery.integrity`).
Level 0 of every variant is the shared dense job ``level_00/dense``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ticketlab.config import AT_INIT_METHODS, AT_INIT_VARIANTS, EARLY_BIRD_VARIANTS, ExperimentConfig, parse_step
from ticketlab.errors import IntegrityError, TrainingDiverged
from ticketlab.lottery.integrity import read_sealed_result, seal_result
from ticketlab.pruning import (
    prunable_weights,
    full_masks,
    keep_top,
    next_keep_counts,
    output_weight_names,
    random_scores,
    remaining_counts,
    remaining_percent,
    strategy_scores,
)
from ticketlab.pruning.channels import (
    alive_channels,
    channel_groups,
    channel_keep_plan,
    channel_masks,
    channel_scores,
    keep_channels,
    random_channel_scores,
)
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, read_json, save_tensors, set_aside, write_json
from ticketlab.tasks import load_task
from ticketlab.tasks.base import Task
from ticketlab.training.optim import optimizer_tensors

DENSE = "dense"
RESULT_FILE = "result.json"
MASK_COST_FILE = "mask_cost.json"  # seconds the job's mask took to compute (scores, searches), when it computed one
EARLY_BIRD_SEARCH = "early_bird_search"  # level-0 job per trial: dense training watched until masks settle
RESET_VARIANTS = ("iterative_reset", "oneshot_reset", "random_pruning")
REINIT_VARIANTS = ("iterative_reinit", "oneshot_reinit") + tuple(
    variant for variant in AT_INIT_VARIANTS if variant.endswith("_reinit"))


@dataclass(frozen=True, order=True)
class JobKey:
    trial: int
    level: int
    variant: str

    def directory(self, run_dir: Path) -> Path:
        return run_dir / f"trial_{self.trial}" / f"level_{self.level:02d}" / self.variant

    def label(self) -> str:
        return f"trial {self.trial} level {self.level} {self.variant}"


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
        if target is not None and 100.0 * _plan_total(plan[-1]) / total <= target:
            break
        if config.prune.scope == "layerwise":
            current = next_keep_counts(current, rates, "layerwise")
            plan.append(dict(current))
        else:
            plan.append(next_keep_counts({"all": plan[-1]}, {"all": config.prune.rate}, "global"))
        if _plan_total(plan[-1]) == _plan_total(plan[-2]):  # nothing left to prune at this rate
            plan.pop()
            break
    return plan


def check_model_settings(config: ExperimentConfig, model: nn.Module) -> None:
    """ConfigError for prune settings that need what `model` lacks: BatchNorm for `prune.channel_score bn_scale`
    (every channel group) and for the early-bird variants' `prune.early_bird_criterion channels`."""
    from ticketlab.errors import ConfigError
    from ticketlab.pruning.early_bird import batchnorm_scales

    prune = config.prune
    if prune.unit == "channel" and prune.channel_score == "bn_scale":
        bare = [group.producer for group in channel_groups(model) if group.norm is None]
        if bare:
            raise ConfigError(f"prune.channel_score 'bn_scale' needs a BatchNorm after every pruned layer; "
                              f"{type(model).__name__} has none after {bare[0]}: use 'l1'")
    early_bird = any(variant in EARLY_BIRD_VARIANTS for variant in config.variants)
    if early_bird and prune.early_bird_criterion == "channels" and not batchnorm_scales(model):
        raise ConfigError(f"prune.early_bird_criterion 'channels' needs BatchNorm layers, which "
                          f"{type(model).__name__} does not have; use 'weights'")


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


def _plan_total(entry) -> int:
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


def job_graph(ctx: ExperimentContext) -> dict[JobKey, tuple[JobKey, ...]]:
    """Every job of the experiment with the jobs whose outputs it reads, in a valid execution order."""
    config = ctx.config
    graph: dict[JobKey, tuple[JobKey, ...]] = {}
    for trial in range(config.trials):
        dense = JobKey(trial, 0, DENSE)
        graph[dense] = ()
        for level in range(1, ctx.levels + 1):
            previous_ticket = dense if level == 1 else JobKey(trial, level - 1, "iterative_reset")
            for variant in config.variants:
                if variant in ("oneshot_reset", "oneshot_reinit"):
                    inputs = (dense,)
                elif variant == "finetune":
                    inputs = (dense if level == 1 else JobKey(trial, level - 1, "finetune"),)
                elif variant in AT_INIT_VARIANTS:  # scored at the dense run's starting weights
                    inputs = (dense,)
                elif variant in EARLY_BIRD_VARIANTS:
                    inputs = (dense, JobKey(trial, 0, EARLY_BIRD_SEARCH))
                else:  # the iterative masks, and the random baseline matching their per-layer sparsity
                    inputs = (dense, previous_ticket)
                graph[JobKey(trial, level, variant)] = inputs
            if variant_needs_search(config.variants) and level == 1:
                graph[JobKey(trial, 0, EARLY_BIRD_SEARCH)] = (dense,)
            # the reinit/random controls need the ticket chain's mask even if iterative_reset itself is not run
            if "iterative_reset" not in config.variants and level < ctx.levels and any(
                variant in config.variants for variant in ("iterative_reinit", "random_pruning")
            ):
                graph[JobKey(trial, level, "iterative_reset")] = (dense, previous_ticket)
    return dict(sorted(graph.items(), key=lambda item: (item[0].trial, item[0].level, _variant_rank(item[0]))))


def variant_needs_search(variants) -> bool:
    """Whether any variant reads the early-bird search job."""
    return any(variant in EARLY_BIRD_VARIANTS for variant in variants)


def _variant_rank(key: JobKey) -> int:
    order = (DENSE, "iterative_reset", "finetune", "iterative_reinit", "random_pruning", "oneshot_reset", "oneshot_reinit")
    return order.index(key.variant) if key.variant in order else len(order)


def job_steps(ctx: ExperimentContext, key: JobKey) -> int:
    """Optimizer steps the job takes (for progress bars)."""
    if key.variant == "finetune":
        return ctx.finetune_steps()
    if key.variant == EARLY_BIRD_SEARCH:
        return ctx.total_steps  # at most: the search stops at detection
    if key.variant == "early_bird" and is_done(ctx, JobKey(key.trial, 0, EARLY_BIRD_SEARCH)):
        from ticketlab.lottery.early_bird import detection_step

        return ctx.total_steps - detection_step(ctx, key)
    return ctx.total_steps - (ctx.rewind_step if key.variant != DENSE else 0)


def is_done(ctx: ExperimentContext, key: JobKey) -> bool:
    return (key.directory(ctx.run_dir) / RESULT_FILE).exists()


def read_result(ctx: ExperimentContext, key: JobKey) -> dict:
    """The finished job's record; IntegrityError if it does not match its digest."""
    return read_sealed_result(key.directory(ctx.run_dir) / RESULT_FILE)


# --- masks -----------------------------------------------------------------------------------------


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
    mask = _compute_mask(ctx, key)
    save_tensors(path, {name: value.bool() for name, value in mask.items()})
    write_json(path.parent / MASK_COST_FILE, {"mask_time_s": time.perf_counter() - started})
    return mask


def _compute_mask(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    trial, level, variant = key.trial, key.level, key.variant
    plan = ctx.keep_plan()
    if level == 0:
        return full_masks(ctx.task.prunable(ctx.make_model(0)))
    if ctx.config.prune.unit == "channel":
        return _compute_channel_mask(ctx, key)
    if variant in ("iterative_reset", "iterative_reinit"):
        parent = JobKey(trial, level - 1, "iterative_reset" if level > 1 else DENSE)
        return _prune_from(ctx, parent, plan[level])
    if variant == "finetune":
        parent = JobKey(trial, level - 1, "finetune" if level > 1 else DENSE)
        return _prune_from(ctx, parent, plan[level])
    if variant in ("oneshot_reset", "oneshot_reinit"):
        dense_final = _final_prunable_weights(ctx, JobKey(trial, 0, DENSE))
        return keep_top(strategy_scores(ctx.config.prune.strategy, dense_final), plan[level])
    if variant in AT_INIT_VARIANTS:
        return _at_init_mask(ctx, key)
    if variant in EARLY_BIRD_VARIANTS:
        from ticketlab.lottery.early_bird import early_bird_mask

        return early_bird_mask(ctx, key)
    if variant == "random_pruning":
        ticket_counts = remaining_counts(job_mask(ctx, JobKey(trial, level, "iterative_reset")))
        shapes = ctx.task.prunable(ctx.make_model(0))
        scores = random_scores(shapes, derive_seed(ctx.config.seed, trial, "random_mask", level))
        return keep_top(scores, ticket_counts)
    raise ValueError(f"no mask rule for variant {variant!r}")


def _at_init_mask(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """A pruning-at-initialization mask at the starting weights of the reset variants (θ0, or θk with rewinding),
    for the level's count: its total ranked over all layers (prune.at_init_scope global) or its per-layer counts.
    The `_shuffled` control permutes the method's mask within each layer; `_reinit` uses it on fresh weights."""
    method = next(name for name in sorted(AT_INIT_METHODS, key=len, reverse=True) if key.variant.startswith(name))
    if key.variant != method:
        mask = job_mask(ctx, JobKey(key.trial, key.level, method))  # stored in the method's directory
        if key.variant.endswith("_shuffled"):
            from ticketlab.pruning.at_init import shuffle_within_layers

            return shuffle_within_layers(mask, derive_seed(ctx.config.seed, key.trial, "shuffle", method, key.level))
        return mask
    from ticketlab.lottery.at_init import at_init_mask

    keep = ctx.keep_plan()[key.level]
    if ctx.config.prune.at_init_scope == "global" and isinstance(keep, dict):
        keep = sum(keep.values())
    model, _, _, _ = _starting_point(ctx, JobKey(key.trial, key.level, "oneshot_reset"))
    return at_init_mask(ctx, method, model, keep, derive_seed(ctx.config.seed, key.trial, "score_batches"))


def _compute_channel_mask(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    """prune.unit 'channel': the same variants over channel groups (whole filters / neurons)."""
    trial, level, variant = key.trial, key.level, key.variant
    model = ctx.make_model(0)
    groups = channel_groups(model)
    keep = ctx.keep_plan()[level]
    score = ctx.config.prune.channel_score
    if variant in ("iterative_reset", "iterative_reinit", "finetune"):
        chain = "finetune" if variant == "finetune" else "iterative_reset"
        parent = JobKey(trial, level - 1, chain if level > 1 else DENSE)
        state = load_tensors(parent.directory(ctx.run_dir) / "weights_final.safetensors")
        parent_mask = job_mask(ctx, parent)
        eligible = {group.name: alive_channels(parent_mask, group) for group in groups}
        kept = keep_channels(channel_scores(score, model, state, groups), keep, eligible)
    elif variant in ("oneshot_reset", "oneshot_reinit"):
        state = load_tensors(JobKey(trial, 0, DENSE).directory(ctx.run_dir) / "weights_final.safetensors")
        kept = keep_channels(channel_scores(score, model, state, groups), keep)
    elif variant == "random_pruning":
        ticket = job_mask(ctx, JobKey(trial, level, "iterative_reset"))
        counts = {group.name: int(alive_channels(ticket, group).sum()) for group in groups}
        kept = keep_channels(random_channel_scores(groups, derive_seed(ctx.config.seed, trial, "random_mask", level)),
                             counts)
    else:
        raise ValueError(f"no mask rule for variant {variant!r}")
    return channel_masks(model, groups, kept, ctx.task.prunable(model))


def _prune_from(ctx: ExperimentContext, parent: JobKey, keep) -> dict[str, torch.Tensor]:
    """Prune the parent job's trained weights, among the weights its mask left, down to `keep`."""
    scores = strategy_scores(ctx.config.prune.strategy, _final_prunable_weights(ctx, parent))
    return keep_top(scores, keep, eligible=job_mask(ctx, parent))


def _final_prunable_weights(ctx: ExperimentContext, key: JobKey) -> dict[str, torch.Tensor]:
    final = load_tensors(key.directory(ctx.run_dir) / "weights_final.safetensors")
    names = ctx.task.prunable(ctx.make_model(0))
    return {name: final[name] for name in names}


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


def prepare_job(ctx: ExperimentContext, key: JobKey) -> JobStart:
    """Compute the job's mask and masked starting weights (saved as weights_init) and its training hooks."""
    mask = job_mask(ctx, key)
    model, start_step, optimizer_state, total_steps = _starting_point(ctx, key)
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
    )


def finish_job(ctx: ExperimentContext, key: JobKey, start: JobStart, result, **extra) -> dict:
    """Check and save the trained weights, then write result.json (last: it marks the job done), sealed with the
    sha256 of the job's files and of its own numbers."""
    job_dir = key.directory(ctx.run_dir)
    final_state = {name: value.detach().cpu() for name, value in start.model.state_dict().items()}
    _check_finite(ctx, key, final_state, result)
    _check_pruned_weights_are_zero(final_state, start.mask, key)
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
    if key.variant == EARLY_BIRD_SEARCH:
        from ticketlab.lottery.early_bird import run_early_bird_search

        if ctx.group is not None:
            print(f"ticketlab: {key.label()} trains on rank 0 alone (the early-bird search has its own runner)",
                  file=sys.stderr)
        return run_early_bird_search(ctx, key, on_progress=on_progress)
    started = time.time()
    start = prepare_job(ctx, key)
    parallel = {}
    if ctx.group is not None:
        from ticketlab.lottery.data_parallel import announce_job

        announce_job(ctx.group, start)
        parallel = {"group": ctx.group}
    result = ctx.task.train(
        start.model.to(ctx.device),
        ctx.data,
        ctx.config.train,
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
        **parallel,
    )
    if ctx.group is not None:
        from ticketlab.lottery.data_parallel import job_trained

        job_trained(ctx.group)
    return finish_job(ctx, key, start, result, wall_time_s=time.time() - started)


def _starting_point(ctx: ExperimentContext, key: JobKey):
    """(model with start weights, start step, optimizer state or None, total steps) for a job."""
    config, trial = ctx.config, key.trial
    dense_dir = JobKey(trial, 0, DENSE).directory(ctx.run_dir)
    if key.variant == DENSE:
        return ctx.make_model(derive_seed(config.seed, trial, "init")), 0, None, ctx.total_steps
    if key.variant == "finetune":
        parent = JobKey(trial, key.level - 1, "finetune" if key.level > 1 else DENSE)
        model = ctx.make_model(0)
        model.load_state_dict(load_tensors(parent.directory(ctx.run_dir) / "weights_final.safetensors"))
        return model, 0, None, ctx.finetune_steps()
    if key.variant == EARLY_BIRD_SEARCH:
        return ctx.make_model(derive_seed(config.seed, trial, "init")), 0, None, ctx.total_steps
    if key.variant == "early_bird":
        from ticketlab.lottery.early_bird import detection_start

        return detection_start(ctx, key)
    if key.variant in REINIT_VARIANTS:
        seed = derive_seed(config.seed, trial, "reinit", key.variant, key.level)
        return ctx.make_model(seed), ctx.rewind_step, None, ctx.total_steps
    # reset variants: the dense run's weights at the rewind step (θ0 when the rewind step is 0)
    model = ctx.make_model(0)
    source = "weights_rewind.safetensors" if ctx.rewind_step > 0 else "weights_init.safetensors"
    model.load_state_dict(load_tensors(dense_dir / source))
    optimizer_state = None
    if ctx.rewind_step > 0 and config.prune.rewind_optimizer_state:
        # pruned entries of the saved buffers move nothing: their gradients are zeroed and weights re-masked
        optimizer_state = load_tensors(dense_dir / "optimizer_rewind.safetensors")
    return model, ctx.rewind_step, optimizer_state, ctx.total_steps


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
