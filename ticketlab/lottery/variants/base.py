"""What a lottery variant is, and the registry the job graph, the report and `find --help` read.

A variant is one `Variant` object: its name, its labels for figures and tables, whether it works on channel units,
and its rules — the jobs whose outputs it reads, how it makes its mask, where its weights start and how long it
trains. The job machinery (`ticketlab.lottery.jobs`) asks the variant of a job for each of these and never tests a
variant's name, so a new variant is one file that registers its objects (a test can register a toy one, run it and
unregister it).

Torch-free: the declarations are read by the report and the CLI on machines without torch. The rules reach the
torch code (masks, starting points) through `Deferred` modules, imported when a rule first runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ticketlab.errors import ConfigError
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.registry import Registry

LAST = 100  # `Variant.rank` of the jobs nothing else reads


class Deferred:
    """A module imported on first attribute access, so that a variant file declares its rules without importing
    torch (`masks = Deferred("ticketlab.lottery.masks")`, then `masks.job_mask(...)` inside a rule)."""

    def __init__(self, module: str):
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._module), name)


masks = Deferred("ticketlab.lottery.masks")
starts = Deferred("ticketlab.lottery.starts")


@dataclass(frozen=True)
class Variant:
    """One way to draw and train a ticket at each pruning level; subclasses override the rules that differ.

    The defaults are the reset ticket of Frankle & Carbin: it reads the dense job, starts from the dense run's
    weights at the rewind step (θ0 when it is 0) and trains to the end of the schedule. `mask` has no default.
    The rules get the job's `ticketlab.lottery.context.ExperimentContext` (`ctx`: config, run directory, data,
    model factory, task, keep plan) and its `JobKey`; `ctx` is not annotated here, as importing it needs torch.
    """

    name: str
    label: str  # figure legends, Markdown tables, HTML
    short_label: str  # terminal tables (13 characters at most)
    channel_units: bool = False  # has a rule for prune.unit 'channel' (`channel_mask`)
    selectable: bool = True  # False: a job added for other variants (the dense run, a search), not a name to ask for
    rank: int = LAST  # order among a level's jobs (graph order, planner ties): the jobs others read come first
    chain: bool = False  # other jobs wait for this one: the planner trains it first to shorten the critical path
    own_runner: bool = False  # trained by `run`, not by the task's training loop (and alone, never in a population)
    trains_alone: bool = False  # never stacked in a population
    # What the report and the analyses read (so that they never name a variant):
    family: str = ""  # "imp" (pruning trained weights), "at_init", "early_bird": figures and analyses group by it
    winning_ticket: bool = False  # THE ticket (iterative_reset): transfer, sweeps and figures default to / stress it
    control_of: str | None = None  # the ticket this one is a control of (reinit, random, shuffled controls)
    same_mask: bool = False  # a control that trains its ticket's very mask (the reinit controls): no mask of its own
    one_shot: bool = False  # prunes the dense run straight to the level's sparsity (no pruning chain)
    rewound: bool = True  # starts from the dense run's weights at the rewind step (W_k) under its mask
    style: tuple[str, str, str] | None = None  # figure colour, marker, line style (None: one is derived)

    def inputs(self, key: JobKey) -> tuple[JobKey, ...]:
        """The jobs whose outputs this job reads; the graph adds those not asked for (a hidden ticket chain)."""
        return (JobKey(key.trial, 0, DENSE),)

    def cost_inputs(self, key: JobKey) -> tuple[JobKey, ...]:
        """The jobs whose whole training this job's result builds on: its training cost (results.csv's
        train_steps_total, train_flops_total) adds theirs, and theirs recursively (`ticketlab.lottery.training_cost`;
        a `rewound` job without the dense run among them pays the dense run's steps to the rewind point instead).
        Default: its `inputs`, so an IMP level pays the dense run and every round before it."""
        return self.inputs(key)

    def kept_during_training(self, ctx, key: JobKey, sizes: dict[str, int]):
        """For a job whose mask changes while it trains: ((step, keep counts), ...) the survivors in force from
        each step on (per tensor of `sizes`, or one total), which its training FLOPs integrate over. None: the
        final mask's counts throughout (exact for schedules that hold the density, as dynamic sparse training)."""
        return None

    def dense_gradient_steps(self, ctx, key: JobKey) -> int:
        """Steps at which the job also computes the dense gradient of every pruned tensor (RigL's regrowth): each
        is priced f_dense - f_sparse forward FLOPs per example above a sparse step (Evci et al. 2020, App. H)."""
        return 0

    def mask_sources(self, key: JobKey) -> tuple[JobKey, ...]:
        """Jobs of the same level whose stored mask this job's mask reads (not graph inputs: nothing waits for
        them); a damaged one makes `ticketlab.lottery.integrity` recompute this job too."""
        return ()

    def mask(self, ctx, key: JobKey) -> dict:
        """The job's mask (tensor name -> 0/1 float tensor) under prune.unit 'weight'."""
        raise NotImplementedError(f"variant {self.name!r} has no mask rule")

    def channel_mask(self, ctx, key: JobKey) -> dict:
        """The job's mask under prune.unit 'channel' (whole filters / neurons); only when `channel_units`."""
        raise ValueError(f"no mask rule for variant {self.name!r}")

    def start(self, ctx, key: JobKey) -> tuple:
        """(model with its starting weights, start step, optimizer state or None, total steps)."""
        return starts.reset_start(ctx, key.trial)

    def train_config(self, ctx, key: JobKey):
        """The optimizer and learning-rate schedule the job trains with: the experiment's `train` section, unless
        the method retrains with its own (fine-tuning at the final learning rate). A job whose config differs
        from the experiment's never joins a population (one population shares one schedule)."""
        return ctx.config.train

    def mask_schedule(self, ctx, key: JobKey):
        """None, or the `ticketlab.training.engine.MaskSchedule` that changes the job's mask while it trains (the
        mask rule then gives the mask it starts from, and the job stores the mask in force at the end)."""
        return None

    def steps(self, ctx, key: JobKey) -> int:
        """Optimizer steps the job takes (for progress bars)."""
        return ctx.total_steps - ctx.rewind_step

    def planned_steps(self, total: int, rewind: int, finetune: int) -> int:
        """Optimizer steps the job takes at most, from the config's step counts alone (train.steps, prune.rewind,
        prune.finetune_steps): `ticketlab.lottery.estimate` sizes an experiment with it before anything loads."""
        return max(total - rewind, 0)

    def check_model(self, config, model) -> None:
        """ConfigError, before anything trains, when the variant needs what `model` lacks."""

    def check_task(self, task) -> None:
        """ConfigError, before anything trains, when the variant needs what the task does not supply."""

    def run(self, ctx, key: JobKey, on_progress=None) -> dict:
        """Train the job and return its sealed record (only for `own_runner` variants)."""
        raise NotImplementedError(f"variant {self.name!r} is trained by the task's training loop")

    def write_summary(self, ctx, graph: dict) -> None:
        """Write the variant's own files into the run directory after results.csv (e.g. early_bird.csv)."""


VARIANTS: Registry[Variant] = Registry("variant")


def register(*variants: Variant) -> None:
    """Add variants to the registry (a variant file calls this when it is imported)."""
    for variant in variants:
        VARIANTS.register(variant.name, variant)


def variant_named(name: str) -> Variant:
    """The registered variant (or hidden job kind) `name`; ConfigError naming the allowed names otherwise."""
    return VARIANTS.get(name)


def variant_names() -> tuple[str, ...]:
    """The names `variants` may list, in registry order (the order of tables and figures)."""
    return tuple(name for name, variant in VARIANTS.items() if variant.selectable)


def check_variants(config) -> None:
    """ConfigError for a name in `config.variants` that no variant has, or one without a channel rule under
    prune.unit 'channel'. (The config checks only that the list is non-empty strings without repeats.)"""
    allowed = variant_names()
    for name in config.variants:
        if name not in allowed:
            raise ConfigError(f"unknown variants {name!r}; allowed: {', '.join(allowed)}")
    if config.prune.unit == "channel":
        weight_only = [name for name in config.variants if not VARIANTS.get(name).channel_units]
        if weight_only:
            channel = [name for name in allowed if VARIANTS.get(name).channel_units]
            raise ConfigError(f"variant {weight_only[0]!r} prunes single weights; with prune.unit 'channel' use "
                              f"{', '.join(channel)}")


def variants_where(**declared) -> tuple[str, ...]:
    """The selectable variants whose declarations have the given values (`variants_where(family="at_init")`), in
    registry order."""
    return tuple(name for name in variant_names()
                 if all(getattr(VARIANTS.get(name), field) == value for field, value in declared.items()))


def winning_ticket() -> str:
    """The name of the winning-ticket variant (the one declared `winning_ticket`)."""
    return variants_where(winning_ticket=True)[0]


def variant_style(name: str) -> tuple[str, str, str] | None:
    """A registered variant's declared figure style (colour, marker, line style), None for others."""
    return VARIANTS.get(name).style if name in VARIANTS else None


def variant_label(name: str) -> str:
    """Readable name of a variant (unknown ones: underscores become spaces)."""
    return VARIANTS.get(name).label if name in variant_names() else name.replace("_", " ")


def variant_short_label(name: str) -> str:
    """Short name of a variant for terminal tables (unknown ones: at most 12 characters)."""
    return VARIANTS.get(name).short_label if name in variant_names() else name.replace("_", "-")[:12]


def variant_sort_key(name: str) -> tuple[int, str]:
    """Sort key putting the registered variants first (in registry order: paper order), then others by name."""
    order = variant_names()
    return (order.index(name), "") if name in order else (len(order), name)
