"""The job graph of a lottery experiment, from the variants' declared inputs alone. Torch-free: it needs only the
variant names, the trials and the number of levels, so what a run will train can be counted before anything is
loaded."""

from __future__ import annotations

from typing import Iterable

from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.variants import LAST, VARIANTS, variant_named


def plan_graph(variants: Iterable[str], trials: int, levels: int) -> dict[JobKey, tuple[JobKey, ...]]:
    """Every job with the jobs whose outputs it reads, in a valid execution order: per trial the dense job, then
    each level's variants, the jobs within a level ordered by `Variant.rank`.

    A job a variant reads but `variants` does not name is added too: the ticket chain the reinit and random
    controls prune from when iterative_reset is not run (up to the level before the last: the last level's mask
    is computed without training it), the early-bird search."""
    variants = tuple(variants)
    graph: dict[JobKey, tuple[JobKey, ...]] = {}

    def add(key: JobKey) -> None:
        graph[key] = variant_named(key.variant).inputs(key)
        for needed in graph[key]:
            if needed not in graph:
                add(needed)

    for trial in range(trials):
        add(JobKey(trial, 0, DENSE))
        for level in range(1, levels + 1):
            for variant in variants:
                add(JobKey(trial, level, variant))
    return dict(sorted(graph.items(), key=lambda item: (item[0].trial, item[0].level, variant_rank(item[0]))))


def variant_rank(key: JobKey) -> int:
    """Order among a level's jobs (`Variant.rank`: the jobs others read first; jobs of no variant last)."""
    return VARIANTS.get(key.variant).rank if key.variant in VARIANTS else LAST


def on_chain(key: JobKey) -> bool:
    """Whether other jobs wait for this one (the dense run, the ticket and fine-tune chains, searches)."""
    return key.variant in VARIANTS and VARIANTS.get(key.variant).chain


def trains_alone(key: JobKey) -> bool:
    """Whether the job is never stacked in a population (it has its own runner, or its mask changes in training)."""
    return key.variant in VARIANTS and (VARIANTS.get(key.variant).own_runner or VARIANTS.get(key.variant).trains_alone)
