"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): one training run from the trial's θ0
in which the sparsity rises from s_i (prune.gmp_initial_sparsity) at step t0 (prune.gmp_start) to the level's
sparsity s_f at step t_end (prune.gmp_end) on the cubic schedule

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0)) ** 3,

the mask recomputed from the weights' magnitudes at t0, t0 + Δt, t0 + 2Δt, ... (Δt = prune.gmp_every) and at t_end
(the paper's t0 + nΔt when Δt divides the span), then trained to the end of the schedule under the final mask; the
early-stopping point is the best evaluation under the final mask (after t_end), so early-stop numbers are those of
the level's sparsity.
Each level is one such run to that level's keep counts (`ctx.keep_plan()`): per layer under prune.scope
'layerwise' (each layer on its own cubic), over all layers together under 'global'. Masks come from the shared
`masks_from_scores` (in prune.n_m's pattern when set); a pruned weight is never kept again.

The mask changes through the engine's `MaskSchedule` hook, which zeroes the pruned weights and their optimizer
state, masks their gradients and checkpoints the mask in force (exact resume), alone or in a classifier
population (which asks each member's schedule at its update steps); RL's stacked PPO has no such hook, so there
the jobs train alone, and so under torchrun. Single weights only (no channel rule). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ticketlab.lottery.variants.base import Deferred, Variant, register
from ticketlab.lottery.variants.imp import Dense

pruning = Deferred("ticketlab.pruning")
steps = Deferred("ticketlab.config")


@dataclass(frozen=True)
class CubicSchedule:
    """The sparsity of Zhu & Gupta's schedule at each mask update, for one final sparsity."""

    start: int  # t0
    end: int  # t_end = t0 + nΔt (the last update)
    every: int  # Δt
    initial: float  # s_i

    def update_steps(self) -> tuple[int, ...]:
        """t0, t0 + Δt, ... before t_end, then t_end."""
        return (*range(self.start, self.end, self.every), self.end)

    def sparsity(self, step: int, final: float) -> float:
        """s_t for a final sparsity s_f (an s_i above s_f starts at s_f: a level never loses sparsity)."""
        initial = min(self.initial, final)
        progress = 1.0 if self.end == self.start else min(max((step - self.start) / (self.end - self.start), 0.0), 1.0)
        return final + (initial - final) * (1.0 - progress) ** 3


@dataclass
class GradualMagnitudeSchedule:
    """The `MaskSchedule` of one gmp job: at each update step, the magnitude mask at the scheduled sparsity."""

    schedule: CubicSchedule
    final_keep: dict | int  # the level's keep counts: per tensor (layerwise) or in total (global)
    prunable: Callable  # model -> name -> weight (the task's choice of pruned tensors)
    n_m: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.updates = frozenset(self.schedule.update_steps())
        # the final mask is installed before the step from t_end: evaluations from t_end + 1 on are the level's
        self.settled_step = self.schedule.end + 1

    def keep_at(self, step: int, sizes: dict[str, int]) -> dict[str, int] | int:
        """Survivors at an update: n - round(s_t * n), per tensor or over all of them."""
        def keep(count: int, final_keep: int) -> int:
            return count - round(self.schedule.sparsity(step, 1.0 - final_keep / count) * count)

        if isinstance(self.final_keep, dict):
            return {name: keep(size, self.final_keep[name]) for name, size in sizes.items()}
        return keep(sum(sizes.values()), self.final_keep)

    def __call__(self, step: int, model, mask: dict) -> dict | None:
        if step not in self.updates:
            return None
        weights = self.prunable(model)
        keep = self.keep_at(step, {name: weight.numel() for name, weight in weights.items()})
        scores = {name: weight.detach().abs() for name, weight in weights.items()}
        return pruning.masks_from_scores(scores, keep, eligible=mask, n_m=self.n_m)


def cubic_schedule(ctx) -> CubicSchedule:
    """The experiment's schedule in steps (prune.gmp_end None: 3/4 of the training, or t0 if later)."""
    prune, per_epoch = ctx.config.prune, ctx.steps_per_epoch
    start = steps.parse_step(prune.gmp_start, per_epoch)
    end = max(start, ctx.total_steps * 3 // 4) if prune.gmp_end is None else steps.parse_step(prune.gmp_end, per_epoch)
    return CubicSchedule(start, end, steps.parse_step(prune.gmp_every, per_epoch), prune.gmp_initial_sparsity)


@dataclass(frozen=True)
class GradualMagnitude(Dense):
    """The dense run's job (θ0 of the trial, the whole schedule, no inputs) with a mask that the engine changes on
    the cubic schedule, pruned gradually to the level's sparsity in one training run."""

    channel_mask = Variant.channel_mask  # single weights only (the dense run has a channel rule; gmp has none)

    def mask_schedule(self, ctx, key):
        return GradualMagnitudeSchedule(cubic_schedule(ctx), ctx.keep_plan()[key.level], ctx.task.prunable,
                                        ctx.config.prune.n_m_pattern())

    def kept_during_training(self, ctx, key, sizes):
        """Dense until t0, then the scheduled counts from each update on (the training-cost accounting)."""
        schedule = self.mask_schedule(ctx, key)
        return ((0, dict(sizes)), *((step, schedule.keep_at(step, sizes)) for step in schedule.schedule.update_steps()))


register(
    GradualMagnitude("gmp", "gradual magnitude pruning", "gmp", rank=8, family="during_training",
                     rewound=False, style=("tab:olive", "X", "-")),
)
