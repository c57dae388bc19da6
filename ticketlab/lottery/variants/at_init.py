"""Pruning at initialization (SNIP, Lee et al. 2019; GraSP, Wang et al. 2020; SynFlow, Tanaka et al. 2020;
magnitude at init), each with Frankle et al. (2021)'s sanity controls: `<method>_shuffled` (the method's mask
permuted within each layer) and `<method>_reinit` (the method's mask on freshly drawn weights). A mask is scored
once, at the dense run's starting weights (θ0, or θk with rewinding), trained once; the controls reuse the mask
stored in the method's directory. They prune single weights only."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.variants.base import Deferred, Variant, masks, register, starts

at_init = Deferred("ticketlab.lottery.at_init")  # the methods' scores, through the task interface
pruning = Deferred("ticketlab.pruning")
seeds = Deferred("ticketlab.seeds")

METHODS = ("snip", "grasp", "synflow", "magnitude_at_init")

@dataclass(frozen=True)
class AtInit(Variant):
    """The method's mask at the starting weights of the reset variants, for the level's count: its total ranked
    over all layers (prune.at_init_scope global) or its per-layer counts."""

    method: str = ""

    def cost_inputs(self, key):
        return ()  # scored once at the starting weights (a few batches, not counted): the job's own training

    def check_task(self, task):
        at_init.check_task_supports(task, (self.name,))  # SNIP and GraSP need the loss, SynFlow a data-free input

    def mask(self, ctx, key):
        keep = ctx.keep_plan()[key.level]
        if ctx.config.prune.at_init_scope == "global" and isinstance(keep, dict):
            keep = sum(keep.values())
        model, _, _, _ = starts.reset_start(ctx, key.trial)
        seed = seeds.derive_seed(ctx.config.seed, key.trial, "score_batches")
        return at_init.at_init_mask(ctx, self.method, model, keep, seed)


@dataclass(frozen=True)
class Shuffled(AtInit):
    """The method's mask permuted within each layer (same per-layer counts, no structure)."""

    def mask_sources(self, key):
        return (JobKey(key.trial, key.level, self.method),)

    def mask(self, ctx, key):
        mask = masks.job_mask(ctx, JobKey(key.trial, key.level, self.method))  # stored in the method's directory
        seed = seeds.derive_seed(ctx.config.seed, key.trial, "shuffle", self.method, key.level)
        return pruning.shuffle_within_layers(mask, seed, ctx.config.prune.n_m_pattern())


@dataclass(frozen=True)
class Reinit(AtInit):
    """The method's mask on freshly drawn weights."""

    def mask_sources(self, key):
        return (JobKey(key.trial, key.level, self.method),)

    def mask(self, ctx, key):
        return masks.job_mask(ctx, JobKey(key.trial, key.level, self.method))

    def start(self, ctx, key):
        return starts.reinit_start(ctx, key)


# name: (label, short label), in the order of tables and figures: the methods, then each control
_LABELS = {
    "snip": ("SNIP at init", "snip"),
    "grasp": ("GraSP at init", "grasp"),
    "synflow": ("SynFlow at init", "synflow"),
    "magnitude_at_init": ("magnitude at init", "mag-init"),
    "snip_shuffled": ("SNIP, shuffled in layers", "snip-shuf"),
    "grasp_shuffled": ("GraSP, shuffled in layers", "grasp-shuf"),
    "synflow_shuffled": ("SynFlow, shuffled in layers", "synflow-shuf"),
    "magnitude_at_init_shuffled": ("magnitude at init, shuffled in layers", "mag-init-shuf"),
    "snip_reinit": ("SNIP + random reinit", "snip-reinit"),
    "grasp_reinit": ("GraSP + random reinit", "grasp-reinit"),
    "synflow_reinit": ("SynFlow + random reinit", "synflow-rein"),
    "magnitude_at_init_reinit": ("magnitude at init + random reinit", "mag-init-rein"),
}
# figure colour and marker per method; line style per kind (method solid, shuffled dotted, reinit dashed)
_MARKS = {"snip": ("tab:cyan", "X"), "grasp": ("tab:olive", "*"), "synflow": ("tab:pink", "h"),
          "magnitude_at_init": ("tab:gray", "p")}
# suffix: (kind, line style, what the control keeps of the method's ticket)
_KINDS = {"": (AtInit, "-", {}), "_shuffled": (Shuffled, ":", {}),
          "_reinit": (Reinit, "--", {"same_mask": True, "rewound": False})}

register(*(kind(f"{method}{suffix}", *_LABELS[f"{method}{suffix}"], method=method, family="at_init",
                control_of=method if suffix else None, style=(*_MARKS[method], line), **declared)
           for suffix, (kind, line, declared) in _KINDS.items() for method in METHODS))
