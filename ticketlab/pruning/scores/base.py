"""The score registry: a pruning method is only its scores (higher = keep), a function (model, inputs) -> {tensor
name: scores}; `ticketlab.pruning.masks.masks_from_scores` alone turns scores into a mask. A new score is one
function and one `SCORES.register` line; the lottery layer reaches it by name (prune.strategy,
prune.channel_score, a pruning-at-initialization variant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.pruning.masks import Masks, prunable_weights
from ticketlab.registry import Registry

Losses = Callable[[nn.Module], Iterable[torch.Tensor]]
Prunable = Callable[[nn.Module], dict[str, nn.Parameter]]
UNITS = ("weight", "channel")
# what a score may read besides the weights, and how an error names it when a task cannot supply it
NEEDS = {"losses": "the task's training loss", "ones_input": "a data-free input", "seed": "a seed"}


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may read besides the model; each score reads only the fields its `Score.needs` names."""

    prunable: Prunable = prunable_weights  # which tensors of a model are scored (the task's choice)
    # The tensors whose values are scored, instead of the model's current ones: unit 'weight', the prunable weights
    # by name (a job's trained weights read from its file); unit 'channel', a state dict holding the groups' tensors.
    weights: dict[str, torch.Tensor] | None = None
    groups: list | None = None  # unit 'channel': the channel groups scored (default: `channel_groups(model)`)
    losses: Losses | None = None  # scalar losses on seeded batches, played on the model given (SNIP, GraSP)
    ones_input: torch.Tensor | None = None  # an all-ones input batch of one example (SynFlow)
    seed: int | None = None  # random scores
    masks: Masks | None = None  # the current mask, applied to a copy of the model before scoring (iterative scores)

    def scored_weights(self, model: nn.Module | None) -> dict[str, torch.Tensor]:
        """Unit 'weight': the tensors to score by name (`weights` when given, else `prunable(model)`)."""
        return self.weights if self.weights is not None else self.prunable(model)


ScoreFunction = Callable[[nn.Module | None, ScoreInputs], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Score:
    """A registered score. `units`: what it scores, 'weight' (one score per prunable weight entry) and/or 'channel'
    (one per channel of each channel group, keyed by the group's name). `needs`: the ScoreInputs fields it reads
    (keys of NEEDS). `rounds_setting`: for an iterative score (SynFlow), the prune setting holding its number of
    prune-and-rescore rounds; None: scored once. `temperature_setting`: for a loss score whose reference code divides
    the logits by a temperature (GraSP), the prune setting holding it; the task's losses are then computed with the
    logits divided by it (`Task.score_losses(..., temperature=)`). None: the plain loss."""

    compute: ScoreFunction
    units: tuple[str, ...] = ("weight",)
    needs: tuple[str, ...] = ()
    rounds_setting: str | None = None
    temperature_setting: str | None = None

    def __post_init__(self):
        unknown = [unit for unit in self.units if unit not in UNITS]
        unknown += [need for need in self.needs if need not in NEEDS]
        if unknown or not self.units:
            raise ValueError(f"Score units must be among {UNITS} and needs among {tuple(NEEDS)}, not {unknown}")


SCORES: Registry[Score] = Registry("score")


def get_score(name: str, unit: str = "weight", setting: str = "score", supplied: tuple[str, ...] | None = None
              ) -> Score:
    """The score `name` for `unit`; ConfigError naming `setting` and the allowed names (those for `unit` that need
    only what is `supplied`, when given) otherwise."""
    allowed = [candidate for candidate, score in SCORES.items() if unit in score.units
               and (supplied is None or set(score.needs) <= set(supplied))]
    if name not in allowed:
        raise ConfigError(f"unknown {setting} {name!r}; allowed: {', '.join(allowed)}")
    return SCORES.get(name)
