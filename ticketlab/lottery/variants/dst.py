"""Dynamic sparse training: RigL (Evci et al. 2020, "Rigging the lottery") and SET (Mocanu et al. 2018, sparse
evolutionary training). Each level is one training run from the trial's θ0 (as the dense run) at the level's
overall density (the IMP level's weights remaining): the mask starts at random with each layer's count from the
layer distribution prune.densities (default 'erk', as both papers use ER/ERK; 'er', 'uniform'), and every ΔT steps
(prune.dst_every: t = ΔT, 2ΔT, ... before T_end = prune.dst_end, default 3/4 of train.steps) each layer drops
floor(α_t · active) of its active weights with the smallest magnitude, α_t = α/2 · (1 + cos(π t / T_end)),
α = prune.dst_drop_fraction (0.3, RigL's), and regrows as many among its inactive weights:

- `rigl`: those with the largest magnitude of the dense gradient of the training loss on the batch of step t (the
  task's `score_losses` from the job's data seed at batch t: the examples the training loop draws at t, without
  augmentation; on a copy of the model, so BatchNorm statistics and the engine's gradients are untouched);
- `set`: at random (uniform scores seeded by trial, level and step).

Each layer's count stays fixed; grown weights start at 0 (`ticketlab.pruning.regrowth` says which weights can
grow). The mask changes through the engine's `MaskSchedule` hook (zeroed weights and optimizer state, exact masks,
the mask in force checkpointed: exact resume); the early-stopping point is the best evaluation after the last
update (under the stored, final mask). Classifier populations stack them (not RL's PPO, not torchrun). Single weights
only. With prune.n_m the start mask is in the N:M pattern (each layer's count capped at N/M of it, as for every
method) and weights grow only where their group has room, so every mask keeps the pattern. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ticketlab.errors import ConfigError
from ticketlab.lottery.variants.base import Deferred, Variant, register
from ticketlab.lottery.variants.imp import Dense

lottery_masks = Deferred("ticketlab.lottery.masks")
pruning = Deferred("ticketlab.pruning")
regrowth = Deferred("ticketlab.pruning.regrowth")
gradients = Deferred("ticketlab.pruning.scores.gradients")
seeds = Deferred("ticketlab.seeds")
steps = Deferred("ticketlab.config")

DEFAULT_DENSITIES = "erk"  # prune.densities None: ERK, as RigL (and SET's Erdős–Rényi) distribute the budget


@dataclass(frozen=True)
class DropGrowSchedule:
    """When the mask is updated and which fraction of each layer's active weights moves."""

    every: int  # ΔT
    end: int  # T_end: no update at or after it
    drop_fraction: float  # α

    def update_steps(self) -> tuple[int, ...]:
        """ΔT, 2ΔT, ... before T_end."""
        return tuple(range(self.every, self.end, self.every))

    def fraction(self, step: int) -> float:
        return regrowth.cosine_drop_fraction(step, self.end, self.drop_fraction)


@dataclass
class DynamicSparseSchedule:
    """The `MaskSchedule` of one rigl or set job: at each update step, drop by magnitude and grow by `grow_scores`
    (step, model -> name -> score, higher = grow)."""

    schedule: DropGrowSchedule
    prunable: Callable  # model -> name -> weight (the task's choice of pruned tensors)
    grow_scores: Callable
    n_m: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        updates = self.schedule.update_steps()
        self.updates = frozenset(updates)
        self.settled_step = updates[-1] + 1 if updates else 0  # the first evaluation under the final mask

    def __call__(self, step: int, model, mask: dict) -> dict | None:
        if step not in self.updates:
            return None
        magnitudes = {name: weight.detach().abs() for name, weight in self.prunable(model).items()}
        return regrowth.drop_and_grow(mask, magnitudes, self.grow_scores(step, model), self.schedule.fraction(step),
                                      self.n_m)


def drop_grow_schedule(ctx) -> DropGrowSchedule:
    """The experiment's schedule in steps (prune.dst_end None: 3/4 of the training)."""
    prune, per_epoch = ctx.config.prune, ctx.steps_per_epoch
    end = ctx.total_steps * 3 // 4 if prune.dst_end is None else steps.parse_step(prune.dst_end, per_epoch)
    return DropGrowSchedule(steps.parse_step(prune.dst_every, per_epoch), end, prune.dst_drop_fraction)


def layer_distribution(config) -> str:
    return config.prune.densities or DEFAULT_DENSITIES


def gradient_grow_scores(ctx, key) -> Callable:
    """RigL's grow scores: |dL/dθ| of the dense weights on the training batch of the step."""
    task, train = ctx.task, ctx.config.train
    data_seed = seeds.derive_seed(ctx.config.seed, key.trial, "data_order")  # the job's (`jobs.prepare_job`)

    def scores(step: int, model) -> dict:
        def losses(scored):
            return task.score_losses(scored, ctx.data, train, data_seed, 1, first_batch=step)

        gradient = gradients.loss_gradient(model, losses, task.prunable)
        return {name: value.abs() for name, value in gradient.items()}

    return scores


def random_grow_scores(ctx, key) -> Callable:
    """SET's grow scores: uniform random numbers seeded by (seed, trial, level, step)."""
    def scores(step: int, model) -> dict:
        seed = seeds.derive_seed(ctx.config.seed, key.trial, "set_regrowth", key.level, step)
        return pruning.random_scores(ctx.task.prunable(model), seed)

    return scores


@dataclass(frozen=True)
class DynamicSparse(Dense):
    """The dense run's job (θ0 of the trial, the whole schedule, no inputs) under a random mask at the level's
    density whose connections move during training: by gradient (`by_gradient`, RigL) or at random (SET)."""

    by_gradient: bool = False
    channel_mask = Variant.channel_mask  # single weights only

    def mask(self, ctx, key):
        seed = seeds.derive_seed(ctx.config.seed, key.trial, "sparse_start", key.level)  # shared by rigl and set
        return lottery_masks.random_at_densities(ctx, key.level, layer_distribution(ctx.config), seed)

    def mask_schedule(self, ctx, key):
        grow = gradient_grow_scores(ctx, key) if self.by_gradient else random_grow_scores(ctx, key)
        return DynamicSparseSchedule(drop_grow_schedule(ctx), ctx.task.prunable, grow, ctx.config.prune.n_m_pattern())

    def dense_gradient_steps(self, ctx, key):
        return len(drop_grow_schedule(ctx).update_steps()) if self.by_gradient else 0

    def check_task(self, task):
        if self.by_gradient and task.score_losses is None:
            raise ConfigError(f"variant {self.name!r} regrows by the gradient of the training loss, which task "
                              f"{task.name!r} does not supply; use 'set' (random regrowth)")


register(
    DynamicSparse("rigl", "RigL (dynamic sparse)", "rigl", rank=9, family="during_training",
                  rewound=False, by_gradient=True, style=("teal", "*", "-")),
    DynamicSparse("set", "SET (dynamic sparse)", "set", rank=10, family="during_training",
                  rewound=False, style=("darkgoldenrod", "H", "-")),
)
