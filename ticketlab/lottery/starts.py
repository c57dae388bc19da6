"""Where a job's weights start, the building blocks of the variants' `start` rules. Each returns
(model with the starting weights, start step, optimizer state or None, total steps)."""

from __future__ import annotations

from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors


def fresh_start(ctx: ExperimentContext, seed: int, start_step: int = 0):
    """Freshly drawn weights (seed `seed`), trained from `start_step` to the end of the schedule."""
    return ctx.make_model(seed), start_step, None, ctx.total_steps


def init_start(ctx: ExperimentContext, trial: int):
    """The trial's θ0 (the dense run's initialization: seeded, or the task's pre-trained weights), trained from
    step 0."""
    model, start_step, optimizer_state, total_steps = fresh_start(ctx, derive_seed(ctx.config.seed, trial, "init"))
    if ctx.task.pretrained_start is not None:
        model = ctx.task.pretrained_start(model, ctx.config)
    return model, start_step, optimizer_state, total_steps


def reinit_start(ctx: ExperimentContext, key: JobKey):
    """Freshly drawn weights for the job (seeded by trial, variant and level), from the rewind step: the random
    reinitialization control."""
    seed = derive_seed(ctx.config.seed, key.trial, "reinit", key.variant, key.level)
    model, start_step, optimizer_state, total = fresh_start(ctx, seed, ctx.rewind_step)
    if ctx.task.reinitialize is not None:  # θ0 is trained (pre-trained) weights: the control draws random ones
        model = ctx.task.reinitialize(model, ctx.config, seed)
    return model, start_step, optimizer_state, total


def reset_start(ctx: ExperimentContext, trial: int):
    """The dense run's weights at the rewind step (θ0 when the rewind step is 0), with its optimizer state there
    under prune.rewind_optimizer_state."""
    dense_dir = JobKey(trial, 0, DENSE).directory(ctx.run_dir)
    model = ctx.make_model(0)
    source = "weights_rewind.safetensors" if ctx.rewind_step > 0 else "weights_init.safetensors"
    model.load_state_dict(load_tensors(dense_dir / source))
    optimizer_state = None
    if ctx.rewind_step > 0 and ctx.config.prune.rewind_optimizer_state:
        # pruned entries of the saved buffers move nothing: their gradients are zeroed and weights re-masked
        optimizer_state = load_tensors(dense_dir / "optimizer_rewind.safetensors")
    return model, ctx.rewind_step, optimizer_state, ctx.total_steps


def trained_start(ctx: ExperimentContext, parent: JobKey, total_steps: int, start_step: int = 0):
    """The parent job's final weights, fresh optimizer state, trained from `start_step` for `total_steps`."""
    model = ctx.make_model(0)
    model.load_state_dict(load_tensors(parent.directory(ctx.run_dir) / "weights_final.safetensors"))
    return model, start_step, None, total_steps
