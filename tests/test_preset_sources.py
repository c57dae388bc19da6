"""Every preset names where its defaults come from: a source line in `ticketlab presets`, and a row in the
results page's "Where the defaults come from" tables (docs/results.md)."""

from __future__ import annotations

from pathlib import Path

from ticketlab.cli import main
from ticketlab.presets import PRESET_HELP, PRESET_SOURCES, PRESETS

RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_every_preset_has_a_source_line():
    assert list(PRESET_SOURCES) == list(PRESETS) == list(PRESET_HELP)
    for name, source in PRESET_SOURCES.items():
        assert isinstance(source, str) and len(source.strip()) >= 10, name


def test_presets_prints_each_source_on_the_preset_line(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)
    for line, name in zip(lines, PRESETS):
        assert line.endswith(f"[source: {PRESET_SOURCES[name]}]"), line


def test_the_results_page_traces_every_preset():
    section = RESULTS_PAGE.read_text().split("## Where the defaults come from", 1)[1]
    missing = [name for name in PRESETS if f"`{name}`" not in section]
    assert not missing, f"docs/results.md 'Where the defaults come from' has no row for {missing}"
