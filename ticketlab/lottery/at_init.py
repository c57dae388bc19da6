"""Pruning-at-initialization masks for the lottery variants, through the task interface and the scores
registry: the method names a registered weight score (`ticketlab.pruning.scores`: 'snip', 'grasp', 'synflow';
'magnitude_at_init' is the 'magnitude' score, named apart from the trained-weights criterion), and the task supplies
what that score needs (the loss batches for SNIP and GraSP, the all-ones input for SynFlow), so every task that has
them can use every method."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning.scores import NEEDS, SCORES, Score, ScoreInputs, score_mask

AT_INIT_SUFFIX = "_at_init"
# how a need is met from the task: the Task field that supplies it
_TASK_SUPPLIES = {"losses": "score_losses", "ones_input": "ones_input", "seed": None}


def method_score(method: str) -> Score | None:
    """The registered weight score an at-init method names ('magnitude_at_init' -> 'magnitude'), or None."""
    name = method.removesuffix(AT_INIT_SUFFIX)
    score = SCORES.get(name) if name in SCORES else None
    return score if score is not None and "weight" in score.units else None


def _missing_need(task, score: Score) -> str | None:
    for need in score.needs:
        field = _TASK_SUPPLIES.get(need, need)
        if field is not None and getattr(task, field, None) is None:
            return need
    return None


def _refusal(task, variant: str, need: str) -> ConfigError:
    from ticketlab.lottery.variants.at_init import METHODS

    usable = [method for method in METHODS
              if (score := method_score(method)) is not None and _missing_need(task, score) is None]
    return ConfigError(f"variant {variant} needs {NEEDS[need]}, which task {task.name!r} does not supply; "
                       f"choose among {', '.join(usable)}")


def check_task_supports(task, variants) -> None:
    """ConfigError (before anything is trained) when a variant needs what the task does not supply."""
    for variant in variants:
        score = method_score(variant.split("_shuffled")[0].split("_reinit")[0])
        need = _missing_need(task, score) if score is not None else None
        if need is not None:
            raise _refusal(task, variant, need)


def at_init_mask(ctx, method: str, model: nn.Module, keep: dict[str, int] | int, seed: int) -> dict[str, torch.Tensor]:
    """The mask `method` ('snip', 'grasp', 'synflow', 'magnitude_at_init', or any registered weight score's name)
    gives `model` (its starting weights) for `keep` survivors: per layer (dict) or in total (int). `seed` draws the
    scoring batches (and seeds a score that needs a seed).

    Which batches score SNIP and GraSP, so a mask can be recomputed: the lottery jobs pass
    `seed = derive_seed(config.seed, trial, "score_batches")` (the same for every level and method of a trial, not
    the training order's seed), and the task yields `prune.score_batches` losses on the batches its training loop
    would draw at steps 0, 1, ... from data seed `seed` (`Task.score_losses`): classification, batch k is the
    training examples `batch_indices(k, N, train.batch_size, seed)` (epoch e = k // (N // batch_size) is the
    permutation `torch.randperm(N, generator=manual_seed(derive_seed(seed, "epoch", e)))`), no augmentation,
    dropout seeded by `derive_seed(seed, "score_dropout", k)`; language, segment k of the training stream
    (`streams.training_segment(stream, k, ...)`) from a zero hidden state. Each loss is the batch's mean
    cross-entropy of the model in training mode; g sums their gradients over k = 0, 1, ...; GraSP plays the same
    batches again for Hg, both passes on the cross-entropy of the logits divided by `prune.grasp_temperature`. An iterative score (SynFlow) runs the rounds its `rounds_setting` names
    (`prune.synflow_rounds`). `masks_from_scores` then keeps the highest scores."""
    task, prune = ctx.task, ctx.config.prune
    score = method_score(method)
    if score is None:
        raise ConfigError(f"unknown pruning-at-initialization method {method!r}; allowed: "
                          f"{', '.join(name for name, entry in SCORES.items() if 'weight' in entry.units)}")
    need = _missing_need(task, score)
    if need is not None:
        raise _refusal(task, method, need)
    model = model.to(ctx.device)

    # a score whose reference code tempers the logits (GraSP: prune.grasp_temperature) gets the tempered losses
    tempered = {"temperature": getattr(prune, score.temperature_setting)} if score.temperature_setting else {}

    def losses(scored: nn.Module):
        return task.score_losses(scored, ctx.data, ctx.config.train, seed, prune.score_batches, **tempered)

    inputs = ScoreInputs(prunable=task.prunable, seed=seed,
                         losses=losses if "losses" in score.needs else None,
                         ones_input=task.ones_input(ctx.data) if "ones_input" in score.needs else None)
    rounds = getattr(prune, score.rounds_setting) if score.rounds_setting else 1
    return score_mask(score, model, inputs, keep, rounds, n_m=prune.n_m_pattern())
