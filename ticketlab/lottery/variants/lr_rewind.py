"""Learning-rate rewinding (Renda, Frankle & Carbin 2020, "Comparing rewinding and fine-tuning in neural network
pruning"): prune the trained network, keep the survivors' *trained* weights, and retrain them with the learning
rate schedule rewound to step k (prune.rewind), from k to the end of the original schedule — the same retraining
budget as weight rewinding (`iterative_reset` with prune.rewind k), which also resets the weights to θk, and as
fine-tuning (`finetune` with prune.finetune_steps T - k). The paper's ordering at equal budget: learning-rate
rewinding >= weight rewinding >= fine-tuning.

`lr_rewind` is iterative (each level prunes the previous level's retrained weights, as the paper's iterative
runs); `lr_rewind_oneshot` prunes the dense run's final weights straight to the level's sparsity (the paper's
one-shot runs). The optimizer state starts fresh, as fine-tuning's does. Weights and channel units both work.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.lottery.keys import DENSE, JobKey, chain_parent
from ticketlab.lottery.variants.base import Variant, masks, register, starts


@dataclass(frozen=True)
class LearningRateRewinding(Variant):
    """Prune the previous level's retrained weights (the dense run's at level 1; `oneshot`: always the dense run's,
    to the level's count) and retrain the survivors from step k to the end of the original schedule."""

    oneshot: bool = False

    def _parent(self, key: JobKey) -> JobKey:
        return JobKey(key.trial, 0, DENSE) if self.oneshot else chain_parent(key, self.name)

    def inputs(self, key):
        return (self._parent(key),)

    def mask(self, ctx, key):
        if self.oneshot:
            return masks.prune_dense(ctx, key)
        return masks.prune_from(ctx, self._parent(key), ctx.keep_plan()[key.level])

    def channel_mask(self, ctx, key):
        if self.oneshot:
            return masks.prune_dense_channels(ctx, key)
        return masks.prune_channels_from(ctx, key, self._parent(key))

    def start(self, ctx, key):
        # the learning rate at step t of the job is the original schedule's at t (the trainer computes it from the
        # step and the total), so starting at k with the original total replays the schedule from k
        return starts.trained_start(ctx, self._parent(key), ctx.total_steps, start_step=ctx.rewind_step)


register(
    # the ticket's colour (or the one-shot ticket's), dash-dotted: retrained from trained weights, not rewound
    LearningRateRewinding("lr_rewind", "iterative + learning-rate rewinding", "iter-lr-rew", channel_units=True,
                          rank=2, chain=True, family="imp", rewound=False, style=("tab:blue", "d", "-.")),
    LearningRateRewinding("lr_rewind_oneshot", "one-shot + learning-rate rewinding", "1shot-lr-rew",
                          channel_units=True, rank=7, oneshot=True, family="imp", one_shot=True, rewound=False,
                          style=("tab:green", "d", "-.")),
)
