"""The variants registry's declarations are what the report, the analyses, the plan estimate and the CLI read (none
of them names a variant): the groups they derive are the tables they held before, and a toy variant's declaration
reaches the plan estimate and the figures without touching any other file."""

from dataclasses import dataclass

import pytest

from ticketlab.config import ExperimentConfig
from ticketlab.lottery.estimate import plan_estimate
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.variants import (VARIANTS, Variant, register, variant_names, variant_style, variants_where,
                                        winning_ticket)


def test_the_derived_groups_are_the_former_tables():
    assert winning_ticket() == "iterative_reset"
    # analysis/masks: the IMP masks of their own (the reinit controls train their ticket's mask); the
    # learning-rate rewinding variants (registered after the former tables were written) prune their own
    assert variants_where(family="imp", same_mask=False) == ("iterative_reset", "oneshot_reset", "random_pruning",
                                                             "finetune", "lr_rewind", "lr_rewind_oneshot")
    # analysis/stability: those whose survivors start from W_k
    assert variants_where(family="imp", same_mask=False, rewound=True) == ("iterative_reset", "oneshot_reset",
                                                                           "random_pruning")
    assert variants_where(family="imp", same_mask=False, one_shot=True) == ("oneshot_reset", "lr_rewind_oneshot")
    # report/cheap_tickets: the at-init methods, each method's controls, the IMP references
    assert variants_where(family="at_init", control_of=None) == ("snip", "grasp", "synflow", "magnitude_at_init")
    assert variants_where(control_of="snip") == ("snip_shuffled", "snip_reinit")
    assert variants_where(control_of="iterative_reset", same_mask=False) == ("random_pruning",)


def test_every_selectable_variant_has_its_own_figure_style():
    styles = [variant_style(name) for name in variant_names()]
    assert None not in styles and len(set(styles)) == len(styles)
    assert variant_style("iterative_reset") == ("tab:blue", "o", "-") and variant_style("no_such") is None


def test_mask_sources_name_the_same_level_masks_a_mask_reads():
    key = JobKey(0, 2, "random_pruning")
    assert VARIANTS.get("random_pruning").mask_sources(key) == (JobKey(0, 2, "iterative_reset"),)
    assert VARIANTS.get("grasp_reinit").mask_sources(JobKey(1, 3, "grasp_reinit")) == (JobKey(1, 3, "grasp"),)
    assert VARIANTS.get("oneshot_reset").mask_sources(JobKey(0, 1, "oneshot_reset")) == ()


@dataclass(frozen=True)
class HalfLength(Variant):
    """A toy that would train for half the schedule: only its declaration matters here."""

    def planned_steps(self, total, rewind, finetune):
        return total // 2


@pytest.mark.parametrize("variants, jobs, iterations", [
    # 2 trials x (dense + 3 levels x toy); dense 40 it, toy 20 it
    (("half_length",), 2 * (1 + 3), 2 * (40 + 3 * 20)),
    # with the reinit control and no iterative_reset: the hidden ticket chain of levels 1..2 (40 - 10 it each)
    (("half_length", "iterative_reinit"), 2 * (1 + 3 * 2 + 2), 2 * (40 + 3 * 20 + 3 * 30 + 2 * 30)),
])
def test_the_plan_estimate_counts_a_toy_variants_jobs_and_declared_steps(variants, jobs, iterations):
    register(HalfLength("half_length", "half length", "half", style=("black", "o", ":")))
    try:
        config = ExperimentConfig().replace(**{"train.steps": "40it", "prune.rewind": "10it", "prune.levels": 3,
                                               "trials": 2, "variants": list(variants)})
        estimate = plan_estimate(config)
        assert (estimate.jobs, estimate.levels, estimate.iterations) == (jobs, 3, iterations)
        assert "half_length" in variant_names() and variant_style("half_length") == ("black", "o", ":")
    finally:
        VARIANTS.unregister("half_length")
    assert "half_length" not in variant_names()
