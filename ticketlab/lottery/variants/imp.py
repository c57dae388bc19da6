"""Iterative magnitude pruning and its controls (Frankle & Carbin 2019; rewinding, Frankle et al. 2020): the dense
run every variant starts from, the ticket chain (iterative_reset), one-shot pruning, pruning with fine-tuning, and
the random-reinitialization and random-pruning controls. All of them work on weights and on channel units."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ticketlab.lottery.keys import DENSE, JobKey, chain_parent
from ticketlab.lottery.variants.base import Deferred, Variant, masks, register, starts

optim = Deferred("ticketlab.training.optim")
steps = Deferred("ticketlab.config")

TICKET_CHAIN = "iterative_reset"  # the chain of winning tickets the iterative variants and controls prune from


def _dense(key: JobKey) -> JobKey:
    return JobKey(key.trial, 0, DENSE)


@dataclass(frozen=True)
class Dense(Variant):
    """Level 0 of every variant: the dense network from θ0 (its job also saves the rewind points)."""

    def inputs(self, key):
        return ()

    def mask(self, ctx, key):
        return masks.every_weight(ctx)

    channel_mask = mask

    def start(self, ctx, key):
        return starts.init_start(ctx, key.trial)

    def steps(self, ctx, key):
        return ctx.total_steps

    def planned_steps(self, total, rewind, finetune):
        return total


@dataclass(frozen=True)
class Iterative(Variant):
    """Prune the previous level's ticket (the dense run at level 1) by the level's rate; `reinit` trains the mask
    from fresh weights instead of the rewound ones."""

    reinit: bool = False

    def inputs(self, key):
        return (_dense(key), chain_parent(key, TICKET_CHAIN))

    def mask(self, ctx, key):
        return masks.prune_from(ctx, chain_parent(key, TICKET_CHAIN), ctx.keep_plan()[key.level])

    def channel_mask(self, ctx, key):
        return masks.prune_channels_from(ctx, key, chain_parent(key, TICKET_CHAIN))

    def start(self, ctx, key):
        return starts.reinit_start(ctx, key) if self.reinit else super().start(ctx, key)


@dataclass(frozen=True)
class OneShot(Variant):
    """Prune the dense run's final weights straight to the level's sparsity."""

    reinit: bool = False

    def mask(self, ctx, key):
        return masks.prune_dense(ctx, key)

    def channel_mask(self, ctx, key):
        return masks.prune_dense_channels(ctx, key)

    def start(self, ctx, key):
        return starts.reinit_start(ctx, key) if self.reinit else super().start(ctx, key)


@dataclass(frozen=True)
class RandomPruning(Variant):
    """A random mask with the ticket's per-layer sparsity at the level, from the rewound weights."""

    def inputs(self, key):
        return (_dense(key), chain_parent(key, TICKET_CHAIN))

    def mask_sources(self, key):
        return (JobKey(key.trial, key.level, TICKET_CHAIN),)  # the per-layer counts of the level's ticket

    def cost_inputs(self, key):
        return ()  # as a method, random pruning trains once (layer-wise, its counts are the keep plan's)

    def mask(self, ctx, key):
        return masks.random_like(ctx, key, JobKey(key.trial, key.level, TICKET_CHAIN))

    def channel_mask(self, ctx, key):
        return masks.random_channels_like(ctx, key, JobKey(key.trial, key.level, TICKET_CHAIN))


@dataclass(frozen=True)
class Finetune(Variant):
    """Prune the previous level's fine-tuned weights and keep training them (no reset), for prune.finetune_steps."""

    def inputs(self, key):
        return (chain_parent(key, self.name),)

    def mask(self, ctx, key):
        return masks.prune_from(ctx, chain_parent(key, self.name), ctx.keep_plan()[key.level])

    def channel_mask(self, ctx, key):
        return masks.prune_channels_from(ctx, key, chain_parent(key, self.name))

    def start(self, ctx, key):
        return starts.trained_start(ctx, chain_parent(key, self.name), ctx.finetune_steps())

    def steps(self, ctx, key):
        return ctx.finetune_steps()

    def planned_steps(self, total, rewind, finetune):
        return finetune

    def train_config(self, ctx, key):
        """Fine-tuning trains at the original schedule's final learning rate (Renda et al. 2020, section 2: "train
        ... at the final learning rate"), not the schedule replayed from step 0; the experiment's own config when
        its rate is constant already (no schedule, no warmup), so constant-rate runs are unchanged."""
        train = ctx.config.train
        if train.schedule == "constant" and steps.step_count(train.warmup)[0] == 0:
            return train
        final = optim.learning_rate_at(ctx.total_steps - 1, train, ctx.total_steps, ctx.steps_per_epoch)
        return dataclasses.replace(train, schedule="constant", lr=final, warmup="0it", milestones=())


register(
    Dense(DENSE, "dense", "dense", channel_units=True, selectable=False, rank=0, chain=True, family="imp"),
    Iterative(TICKET_CHAIN, "iterative + reset (winning ticket)", "iter-reset", channel_units=True, rank=1,
              chain=True, family="imp", winning_ticket=True, style=("tab:blue", "o", "-")),
    Iterative("iterative_reinit", "iterative + random reinit", "iter-reinit", channel_units=True, rank=3, reinit=True,
              family="imp", control_of=TICKET_CHAIN, same_mask=True, rewound=False,
              style=("tab:orange", "s", "--")),
    OneShot("oneshot_reset", "one-shot + reset", "1shot-reset", channel_units=True, rank=5, family="imp",
            one_shot=True, style=("tab:green", "^", "-")),
    OneShot("oneshot_reinit", "one-shot + random reinit", "1shot-reinit", channel_units=True, rank=6, reinit=True,
            family="imp", one_shot=True, control_of="oneshot_reset", same_mask=True, rewound=False,
            style=("tab:red", "v", "--")),
    RandomPruning("random_pruning", "random pruning", "random", channel_units=True, rank=4, family="imp",
                  control_of=TICKET_CHAIN, style=("tab:purple", "D", ":")),
    Finetune("finetune", "prune + fine-tune", "finetune", channel_units=True, rank=2, chain=True, family="imp",
             rewound=False, style=("tab:brown", "P", "-.")),
)
