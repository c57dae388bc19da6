"""The lottery variants: one `Variant` object each, one file per family, in the `VARIANTS` registry.

Built in, in the order of tables and figures: `imp` (the dense run, iterative pruning with reset, its reinit and
random controls, one-shot, fine-tuning), `lr_rewind` (learning-rate rewinding, iterative and one-shot), `at_init`
(SNIP, GraSP, SynFlow, magnitude at init and their shuffled and reinit controls), `early_bird` (early-bird tickets
and their search job), `gmp` (gradual magnitude pruning in one training run), `dst` (RigL and SET: dynamic
sparse training). A new variant is one file: subclass `Variant` (override the rules that differ from the reset
ticket: `mask`, and `inputs`, `start`, `steps` where they differ), `register` an instance, and import the file
(here for a built-in one). Torch-free.
"""

from __future__ import annotations

from ticketlab.lottery.variants.base import (
    LAST,
    VARIANTS,
    Deferred,
    Variant,
    check_variants,
    register,
    variant_label,
    variant_named,
    variant_names,
    variant_short_label,
    variant_sort_key,
    variant_style,
    variants_where,
    winning_ticket,
)
from ticketlab.lottery.variants import imp, lr_rewind, at_init, early_bird, gmp, dst  # noqa: E402,F401  (built-ins register)

__all__ = ["LAST", "VARIANTS", "Deferred", "Variant", "check_variants", "register", "variant_label", "variant_named",
           "variant_names", "variant_short_label", "variant_sort_key", "variant_style", "variants_where",
           "winning_ticket"]
