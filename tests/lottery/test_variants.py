"""The variants registry: every variant declared once, torch-free, listed by `find --help` and checked by name
(unknown names and weight-only variants under channel units refused in one line, exit 2)."""

import subprocess
import sys

import pytest

from ticketlab.cli import main
from ticketlab.config import DEFAULT_VARIANTS, ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.variants import VARIANTS, check_variants, variant_names


def test_the_declarations_load_without_torch():
    code = ("import sys; from ticketlab.lottery.variants import variant_names, variant_label; "
            "import ticketlab.report.results, ticketlab.lottery.graph; "
            "print(len(variant_names()), variant_label('snip'), 'torch' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["25", "SNIP", "at", "init", "False"]  # 23 + rigl, set


def test_find_help_lists_every_variant(capsys):
    assert main(["find", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in variant_names():
        assert name in text
    assert len(variant_names()) == 25 and set(DEFAULT_VARIANTS) <= set(variant_names())


def test_labels_are_unique_and_short_labels_fit_terminal_tables():
    selectable = [VARIANTS.get(name) for name in variant_names()]
    assert len({variant.label for variant in selectable}) == len(selectable)
    assert len({variant.short_label for variant in selectable}) == len(selectable)
    assert all(len(variant.short_label) <= 13 for variant in selectable)


def test_hidden_jobs_are_not_variant_names():
    assert "dense" in VARIANTS and "early_bird_search" in VARIANTS
    for name in ("dense", "early_bird_search"):
        with pytest.raises(ConfigError, match=f"unknown variants '{name}'; allowed: iterative_reset, "):
            check_variants(ExperimentConfig(variants=(name,)))


@pytest.mark.parametrize("variant", ["snip_reinit", "early_bird"])
def test_weight_only_variants_are_refused_under_channel_units(variant, capsys, tmp_path):
    code = main(["find", "--prune.unit", "channel", "--variants", f"iterative_reset,{variant}",
                 "--root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (f"ticketlab: error: variant '{variant}' prunes single weights; with prune.unit 'channel' use "
                      "iterative_reset, iterative_reinit, oneshot_reset, oneshot_reinit, random_pruning, finetune, "
                      "lr_rewind, lr_rewind_oneshot")


def test_the_api_checks_the_names_too(tmp_path):
    from ticketlab.api import find_tickets

    with pytest.raises(ConfigError, match="unknown variants 'lucky'; allowed: iterative_reset, "):
        find_tickets(ExperimentConfig(variants=("iterative_reset", "lucky")), root=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything is written
