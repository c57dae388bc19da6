"""A transfer's jobs: each source ticket's start on the target (its masks and masked starting weights, the output
layer fresh), the random-ticket control, and training them (stacked populations where the model stacks).

Each job is written as every job is (`lottery.jobs.finish_job`: sealed result.json, content-hashed safetensors),
so a re-run trains nothing new and a killed run resumes exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.lottery.context import ExperimentContext, is_done
from ticketlab.lottery.jobs import JobStart, finish_job
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.planner import choose_population_size, stacks_jobs
from ticketlab.lottery.progress import progress_bar
from ticketlab.lottery.transfer_results import TRANSFERRED
from ticketlab.lottery.variants import winning_ticket
from ticketlab.pruning import full_masks, keep_top, output_layer_name, random_scores, remaining_counts
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors, save_tensors


@dataclass(frozen=True)
class SourceRun:
    """A finished source run: its directory, config and the levels of its ticket chain that are done."""

    run_dir: Path
    config: ExperimentConfig

    @property
    def name(self) -> str:
        return self.run_dir.name

    def ticket_dir(self, trial: int, level: int) -> Path:
        return JobKey(trial, 0, DENSE).directory(self.run_dir) if level == 0 else \
            JobKey(trial, level, winning_ticket()).directory(self.run_dir)


def output_prefix_of(model: nn.Module) -> str:
    """State-dict prefix of the output layer's module (its weight, bias and any buffers)."""
    return output_layer_name(model).rsplit(".", 1)[0] + "."


def transfer_start(ctx: ExperimentContext, run: SourceRun, key: JobKey, output_layer: str) -> JobStart:
    """The job's mask (computed once, stored in its directory) and its masked starting weights.

    transferred: every tensor the source holds except the output layer's is the source ticket's masked start;
    the output layer (and, across tasks, any tensor the source lacks) is the target model's fresh initialization.
    random_ticket: a fresh initialization under a random mask with the transferred ticket's per-layer counts.
    """
    job_dir = key.directory(ctx.run_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    seed, trial, level = ctx.config.seed, key.trial, key.level
    template = ctx.make_model(0)
    output_prefix = output_prefix_of(template)
    ticket_mask = transferred_mask(ctx, run, trial, level, output_layer)
    if key.variant == TRANSFERRED:
        mask = ticket_mask
        model = ctx.make_model(derive_seed(seed, trial, "transfer_output", level))
        start = _source_start(run, trial, level)
        state = model.state_dict()
        for name in state:
            if not name.startswith(output_prefix) and name in start:
                state[name] = start[name].clone()
        model.load_state_dict(state)
    else:
        shapes = ctx.task.prunable(template)
        scores = random_scores(shapes, derive_seed(seed, trial, "random_ticket_mask", level))
        mask = random_ticket_mask(scores, remaining_counts(ticket_mask), run.config.prune.n_m_pattern())
        model = ctx.make_model(derive_seed(seed, trial, "random_ticket", level))
    mask_path = job_dir / "mask.safetensors"
    if mask_path.exists():  # computed at the job's first start; equal by construction, reused as it is
        mask = {name: value.float() for name, value in load_tensors(mask_path).items()}
    else:
        save_tensors(mask_path, {name: value.bool() for name, value in mask.items()})
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in mask.items():
            parameters[name].mul_(value)
    save_tensors(job_dir / "weights_init.safetensors", model.state_dict())
    return JobStart(mask=mask, model=model, start_step=ctx.rewind_step, total_steps=ctx.total_steps,
                    optimizer_state=None, data_seed=derive_seed(seed, trial, "data_order"), snapshot_steps=(),
                    on_snapshot=None, augment=ctx.task.per_step_hook(ctx.config, model))


def random_ticket_mask(scores: dict[str, torch.Tensor], counts: dict[str, int],
                       n_m: tuple[int, int] | None) -> dict[str, torch.Tensor]:
    """The random ticket's mask: `counts` per tensor at the highest random `scores`; when the source tickets are
    N:M (`n_m`), every tensor sparse enough for the pattern (at most N/M kept) takes it too, as the ticket's
    did, and the rest (a dense output layer, level 0) are drawn freely."""
    if n_m is None:
        return keep_top(scores, counts)
    patterned = {name for name, score in scores.items() if counts[name] * n_m[1] <= score.numel() * n_m[0]}
    mask = {}
    for names, pattern in ((patterned, n_m), (set(scores) - patterned, None)):
        mask.update(keep_top({name: scores[name] for name in names}, {name: counts[name] for name in names},
                             n_m=pattern))
    return {name: mask[name] for name in scores}


def transferred_mask(ctx: ExperimentContext, run: SourceRun, trial: int, level: int,
                     output_layer: str = "dense") -> dict[str, torch.Tensor]:
    """The source ticket's masks for every prunable tensor but the output layer's (across tasks: for those the
    source pruned; the target's others stay dense); the output layer dense, or (`masked`) a random mask keeping
    the source output layer's fraction of its weights."""
    template = ctx.make_model(0)
    weights = ctx.task.prunable(template)
    output_name = output_layer_name(template)
    source_dir = run.ticket_dir(trial, level)
    source_mask = {name: value.float() for name, value in load_tensors(source_dir / "mask.safetensors").items()}
    mask = full_masks(weights)
    for name in weights:
        if name != output_name and name in source_mask:
            mask[name] = source_mask[name].clone()
    if output_layer == "masked" and level > 0:
        kept = source_mask[output_name].sum().item() / source_mask[output_name].numel()
        count = int(round(kept * weights[output_name].numel()))
        scores = random_scores({output_name: weights[output_name]}, derive_seed(ctx.config.seed, trial,
                                                                                "transfer_output_mask", level))
        mask[output_name] = keep_top(scores, {output_name: count})[output_name]
    return mask


def _source_start(run: SourceRun, trial: int, level: int) -> dict[str, torch.Tensor]:
    """The source ticket's masked starting weights: its weights_init (θ0, or θk under late rewinding, masked);
    for level 0 the dense start, θk when the source rewinds."""
    dense_dir = run.ticket_dir(trial, 0)
    if level == 0 and (dense_dir / "weights_rewind.safetensors").exists():
        return load_tensors(dense_dir / "weights_rewind.safetensors")
    return load_tensors(run.ticket_dir(trial, level) / "weights_init.safetensors")


def train_transfer_jobs(ctx: ExperimentContext, run: SourceRun, keys: list[JobKey], output_layer: str,
                population: int | None, progress: bool) -> None:
    """Train the jobs not done: stacked populations where the model stacks, else one at a time. Batches are cut
    from the full job list (never from what is done), so a resumed run re-forms the populations it started."""
    template = ctx.make_model(0)
    size = (population or choose_population_size(ctx)) if stacks_jobs(ctx, template, population) else 1
    size = max(1, min(size, len(keys)))
    pending_total = sum(not is_done(ctx, key) for key in keys)
    steps_left = pending_total * (ctx.total_steps - ctx.rewind_step)
    bar = progress_bar(steps_left, enabled=progress and steps_left > 0, label=f"transfer {run.name}")
    try:
        for index in range(0, len(keys), size):
            batch = [key for key in keys[index:index + size] if not is_done(ctx, key)]
            if not batch:
                continue
            started = time.time()
            starts = [transfer_start(ctx, run, key, output_layer) for key in batch]
            if size == 1:
                start = starts[0]
                result = ctx.task.train(
                    start.model.to(ctx.device), ctx.data, ctx.config.train, masks=start.mask,
                    data_seed=start.data_seed, start_step=start.start_step, total_steps=start.total_steps,
                    optimizer_state=None, job_dir=batch[0].directory(ctx.run_dir), on_progress=bar.update,
                    checkpoint_interval_s=ctx.checkpoint_interval_s, augment=start.augment)
                finish_job(ctx, batch[0], start, result, wall_time_s=time.time() - started, source=run.name)
                continue
            from ticketlab.training.population import PopulationMember, train_population

            members = [PopulationMember(model=start.model, masks=start.mask, data_seed=start.data_seed,
                                        start_step=start.start_step, total_steps=start.total_steps,
                                        optimizer_state=None, job_dir=key.directory(ctx.run_dir))
                       for key, start in zip(batch, starts)]
            if ctx.task.train_population is not None:  # the task's own population trainer, as `find` uses it
                results = ctx.task.train_population(members, ctx.data, ctx.config.train, on_progress=bar.update,
                                                    checkpoint_interval_s=ctx.checkpoint_interval_s)
            else:
                results = train_population(members, ctx.data, ctx.config.train, on_progress=bar.update,
                                           checkpoint_interval_s=ctx.checkpoint_interval_s,
                                           augment=starts[0].augment)
            wall_time_s = time.time() - started
            for key, start, result in zip(batch, starts, results):
                finish_job(ctx, key, start, result, wall_time_s=wall_time_s, population_size=len(batch),
                           source=run.name)
    finally:
        bar.close()

