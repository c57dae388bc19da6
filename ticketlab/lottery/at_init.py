"""Pruning-at-initialization masks for the lottery variants, through the task interface: the task supplies the
loss batches (SNIP, GraSP) and the all-ones input (SynFlow), so every task that has them can use every method."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning import keep_top, magnitude_scores
from ticketlab.pruning.at_init import grasp_scores, snip_scores, synflow_mask


def check_task_supports(task, variants) -> None:
    """ConfigError (before anything is trained) when a variant needs what the task does not supply."""
    for variant in variants:
        method = variant.split("_shuffled")[0].split("_reinit")[0]
        if method == "synflow" and task.ones_input is None:
            raise ConfigError(f"variant {variant} needs a data-free input, which task {task.name!r} does not "
                              "supply; choose among snip, grasp, magnitude_at_init")
        if method in ("snip", "grasp") and task.score_losses is None:
            raise ConfigError(f"variant {variant} needs the task's training loss, which task {task.name!r} does "
                              "not supply; choose synflow or magnitude_at_init")


def at_init_mask(ctx, method: str, model: nn.Module, keep: dict[str, int] | int, seed: int) -> dict[str, torch.Tensor]:
    """The mask `method` ('snip', 'grasp', 'synflow', 'magnitude_at_init') gives `model` (its starting weights)
    for `keep` survivors: per layer (dict) or in total (int). `seed` draws the scoring batches.

    Which batches score SNIP and GraSP, so a mask can be recomputed: the lottery jobs pass
    `seed = derive_seed(config.seed, trial, "score_batches")` (the same for every level and method of a trial, not
    the training order's seed), and the task yields `prune.score_batches` losses on the batches its training loop
    would draw at steps 0, 1, ... from data seed `seed` (`Task.score_losses`): classification, batch k is the
    training examples `batch_indices(k, N, train.batch_size, seed)` (epoch e = k // (N // batch_size) is the
    permutation `torch.randperm(N, generator=manual_seed(derive_seed(seed, "epoch", e)))`), no augmentation,
    dropout seeded by `derive_seed(seed, "score_dropout", k)`; language, segment k of the training stream
    (`streams.training_segment(stream, k, ...)`) from a zero hidden state. Each loss is the batch's mean
    cross-entropy of the model in training mode; g sums their gradients over k = 0, 1, ...; GraSP plays the same
    batches again for Hg. `keep_top` then keeps the highest scores."""
    task, prune = ctx.task, ctx.config.prune
    model = model.to(ctx.device)
    if method == "magnitude_at_init":
        return keep_top(magnitude_scores(task.prunable(model)), keep)
    if method == "synflow":
        if task.ones_input is None:
            raise ConfigError(f"variant synflow needs a data-free input, which task {task.name!r} does not supply; "
                              "choose among snip, grasp, magnitude_at_init")
        return synflow_mask(model, task.ones_input(ctx.data), keep, prune.synflow_rounds, task.prunable)
    if task.score_losses is None:
        raise ConfigError(f"variant {method} needs the task's training loss, which task {task.name!r} does not "
                          "supply; choose synflow or magnitude_at_init")

    def losses(scored: nn.Module):
        return task.score_losses(scored, ctx.data, ctx.config.train, seed, prune.score_batches)

    score = {"snip": snip_scores, "grasp": grasp_scores}[method]
    return keep_top(score(model, losses, task.prunable), keep)
