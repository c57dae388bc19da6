"""Old import path: the pruning-at-initialization scores live in `ticketlab.pruning.scores` and the shuffling
control in `ticketlab.pruning.masks`. Kept only for `ticketlab.lottery.jobs` (shuffle_within_layers) until its
import moves; the integrator removes this module."""

from ticketlab.pruning.masks import shuffle_within_layers

__all__ = ["shuffle_within_layers"]
