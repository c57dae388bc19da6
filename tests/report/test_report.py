"""Offline tests of ticketlab.report on a synthetic results.csv (numpy + matplotlib only)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # no packaging config yet: make the checkout importable
    sys.path.insert(0, str(REPO_ROOT))

from ticketlab.errors import TicketlabError  # noqa: E402
from ticketlab.report import read_results, summarize_results, write_report  # noqa: E402
from ticketlab.report.figures import draw_lottery_figure, format_percent  # noqa: E402
from ticketlab.report.results import METRIC_COLUMNS, with_dense_level  # noqa: E402
from ticketlab.report.table import format_remaining, summary_markdown, summary_text_table  # noqa: E402

COLUMNS = [
    "variant",
    "trial",
    "level",
    "weights_remaining_percent",
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "final_test_accuracy",
    "final_train_accuracy",
    "final_iteration",
]
# Deliberately not in canonical order; "oneshot_reset" has no level-0 rows; "zz_custom" is unknown.
VARIANTS_WITH_DENSE = ["random_pruning", "iterative_reset", "iterative_reinit", "zz_custom"]
VARIANTS = VARIANTS_WITH_DENSE + ["oneshot_reset"]
TRIALS = 3
LEVELS = 6
VARIANT_OFFSET = {
    "iterative_reset": 0.010,
    "iterative_reinit": -0.020,
    "oneshot_reset": 0.005,
    "random_pruning": -0.030,
    "zz_custom": -0.010,
}


def percent(level: int, trial: int) -> float:
    """Remaining percent; global pruning makes it differ slightly between trials."""
    return 100.0 if level == 0 else 100.0 * 0.513**level + 0.01 * trial


def make_row(variant: str, trial: int, level: int) -> dict[str, object]:
    if level == 0:  # the dense network is the same run for every variant
        acc = 0.9700 + 0.002 * trial
        iteration = 20000 + 500 * trial
    else:
        acc = 0.9700 + VARIANT_OFFSET[variant] * level / 5 + 0.002 * trial + 0.0005 * level * trial
        iteration = 20000 - 1500 * level + 400 * trial + (3000 * level if "reinit" in variant else 0)
    return {
        "variant": variant,
        "trial": trial,
        "level": level,
        "weights_remaining_percent": round(percent(level, trial), 4),
        "early_stop_iteration": iteration,
        "early_stop_test_accuracy": round(acc, 6),
        "early_stop_val_loss": round(0.1 + 0.01 * level + 0.001 * trial, 6),
        "final_test_accuracy": round(acc - 0.003, 6),
        "final_train_accuracy": round(min(1.0, 0.99 + 0.001 * trial), 6),
        "final_iteration": 50000,
    }


def synthetic_rows() -> list[dict[str, object]]:
    rows = []
    for trial in range(TRIALS):
        for variant in VARIANTS:
            for level in range(LEVELS):
                if level == 0 and variant not in VARIANTS_WITH_DENSE:
                    continue
                rows.append(make_row(variant, trial, level))
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        # Header with spaces after commas (as documented) plus an extra column to ignore.
        handle.write(", ".join(COLUMNS + ["seed_note"]) + "\n")
        for row in rows:
            writer.writerow([row[c] for c in COLUMNS] + ["ignored"])
    return path


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    write_csv(tmp_path / "results.csv", synthetic_rows())
    return tmp_path


def test_read_results_types_and_extra_columns(run_dir: Path) -> None:
    rows = read_results(run_dir / "results.csv")
    assert len(rows) == len(synthetic_rows())
    first = rows[0]
    assert set(first) == set(COLUMNS) | {"metric", "early_stop_test_metric", "final_test_metric"}
    # a file of the accuracy-only layout reads as accuracy, in the task-neutral columns too
    assert first["metric"] == "accuracy"
    assert first["early_stop_test_metric"] == first["early_stop_test_accuracy"]
    assert first["final_test_metric"] == first["final_test_accuracy"]
    assert isinstance(first["variant"], str)
    for key in ("trial", "level", "early_stop_iteration", "final_iteration"):
        assert type(first[key]) is int
    for key in ("weights_remaining_percent", "early_stop_test_accuracy", "final_train_accuracy"):
        assert type(first[key]) is float
    generic = ("metric", "early_stop_test_metric", "final_test_metric")
    assert [{k: v for k, v in row.items() if k not in generic} for row in rows] == [
        {k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in synthetic_rows()]


def test_read_results_errors(tmp_path: Path) -> None:
    with pytest.raises(TicketlabError, match="not found"):
        read_results(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("variant,trial,level\niterative_reset,0,0\n")
    with pytest.raises(TicketlabError, match="missing column"):
        read_results(bad)
    rows = synthetic_rows()[:1]
    rows[0]["early_stop_iteration"] = "soon"
    with pytest.raises(TicketlabError, match="early_stop_iteration"):
        read_results(write_csv(tmp_path / "bad2.csv", rows))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read_results(empty) == []


def test_summarize_matches_numpy(run_dir: Path) -> None:
    rows = read_results(run_dir / "results.csv")
    summary = summarize_results(rows)
    # Canonical variant order, unknown variants last; levels ascending.
    expected_order = ["iterative_reset", "iterative_reinit", "oneshot_reset", "random_pruning", "zz_custom"]
    seen = [e["variant"] for e in summary]
    assert sorted(set(seen), key=seen.index) == expected_order
    assert [(e["variant"], e["level"]) for e in summary] == sorted(
        ((e["variant"], e["level"]) for e in summary), key=lambda k: (expected_order.index(k[0]), k[1])
    )
    assert len(summary) == len(VARIANTS_WITH_DENSE) * LEVELS + (LEVELS - 1)
    for entry in summary:
        members = [r for r in rows if r["variant"] == entry["variant"] and r["level"] == entry["level"]]
        assert entry["n"] == len(members) == TRIALS
        assert entry["trials"] == list(range(TRIALS))
        assert entry["weights_remaining_percent"] == pytest.approx(
            np.mean([r["weights_remaining_percent"] for r in members])
        )
        for metric in METRIC_COLUMNS:
            values = np.array([r[metric] for r in members], dtype=float)
            assert entry[f"{metric}_mean"] == pytest.approx(values.mean())
            assert entry[f"{metric}_min"] == pytest.approx(values.min())
            assert entry[f"{metric}_max"] == pytest.approx(values.max())
            assert entry[f"{metric}_std"] == pytest.approx(values.std())


def test_dense_point_injection(run_dir: Path) -> None:
    summary = summarize_results(read_results(run_dir / "results.csv"))
    assert not any(e["variant"] == "oneshot_reset" and e["level"] == 0 for e in summary)
    filled = with_dense_level(summary)
    assert summary == summarize_results(read_results(run_dir / "results.csv"))  # input untouched
    assert len(filled) == len(summary) + 1
    dense = [e for e in filled if e["variant"] == "oneshot_reset" and e["level"] == 0]
    assert len(dense) == 1 and dense[0]["dense_injected"] is True
    dense_acc = np.array([make_row("iterative_reset", t, 0)["early_stop_test_accuracy"] for t in range(TRIALS)])
    assert dense[0]["weights_remaining_percent"] == pytest.approx(100.0)
    assert dense[0]["n"] == TRIALS
    assert dense[0]["early_stop_test_accuracy_mean"] == pytest.approx(dense_acc.mean())
    assert dense[0]["early_stop_test_accuracy_std"] == pytest.approx(dense_acc.std())
    assert dense[0]["early_stop_test_accuracy_min"] == pytest.approx(dense_acc.min())
    assert dense[0]["early_stop_test_accuracy_max"] == pytest.approx(dense_acc.max())
    # The injected point comes first in its variant's line; own level-0 rows are unchanged.
    oneshot = [e for e in filled if e["variant"] == "oneshot_reset"]
    assert [e["level"] for e in oneshot] == list(range(LEVELS))
    own = {(e["variant"], e["level"]): e for e in summary}
    for e in filled:
        if not e.get("dense_injected"):
            assert e == own[(e["variant"], e["level"])]
    # Idempotent, and nothing to inject when no variant has a dense row.
    assert with_dense_level(filled) == filled
    no_dense = [e for e in summary if e["level"] > 0]
    assert with_dense_level(no_dense) == no_dense


def test_tables(run_dir: Path) -> None:
    summary = summarize_results(read_results(run_dir / "results.csv"))
    md = summary_markdown(summary)
    assert "iterative + reset (winning ticket): early-stop test acc % (mean ± std)" in md
    assert "final train acc %" in md
    text = summary_text_table(summary)
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "iter-reset" in text and "1shot-reset" in text
    # Six variants still fit in 100 columns.
    six = []
    for variant in ["iterative_reset", "iterative_reinit", "oneshot_reset", "oneshot_reinit", "random_pruning", "finetune"]:
        for trial in range(TRIALS):
            for level in range(LEVELS):
                row = make_row("iterative_reset", trial, level)
                row["variant"] = variant
                six.append(row)
    text6 = summary_text_table(summarize_results(six))
    lines = text6.splitlines()
    assert len(lines) == 3 + LEVELS
    assert max(len(line) for line in lines) <= 100
    assert format_remaining(100.0) == "100" and format_remaining(51.3) == "51.3"
    assert format_remaining(7.0) == "7.00" and format_remaining(0.36) == "0.360"
    assert [format_percent(x) for x in (100.0, 51.26, 7.0, 3.6, 0.36)] == ["100", "51.3", "7.0", "3.6", "0.36"]


def test_write_report(run_dir: Path) -> None:
    paths = write_report(run_dir)
    assert set(paths) == {"png", "svg", "markdown"}
    report = run_dir / "report"
    assert paths["png"] == report / "lottery.png"
    assert paths["svg"] == report / "lottery.svg"
    assert paths["markdown"] == report / "summary.md"
    assert paths["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert paths["png"].stat().st_size > 10_000
    svg = paths["svg"].read_text()
    assert "<svg" in svg and "Weights remaining (%)" in svg
    md = paths["markdown"].read_text()
    assert md.startswith("# ")
    assert "min" in md and "max" in md and "minimum validation loss" in md  # accuracy: picked by validation loss
    # Expected mean numbers (in percent, 2 decimals) straight from the generator.
    for variant in VARIANTS:
        for level in (1, LEVELS - 1):
            values = [make_row(variant, t, level) for t in range(TRIALS)]
            acc = np.array([r["early_stop_test_accuracy"] for r in values]) * 100
            assert f"{acc.mean():.2f} ± {acc.std():.2f}" in md
            final = np.array([r["final_test_accuracy"] for r in values]) * 100
            assert f"{final.mean():.2f} ± {final.std():.2f}" in md
            iters = np.mean([r["early_stop_iteration"] for r in values])
            assert f"| {iters:.0f} |" in md
    dense = np.array([make_row("iterative_reset", t, 0)["early_stop_test_accuracy"] for t in range(TRIALS)]) * 100
    level0 = next(line for line in md.splitlines() if line.startswith("| 0 | 100 |"))
    assert level0.count(f"{dense.mean():.2f} ± {dense.std():.2f}") == len(VARIANTS)
    # No temporary files are left behind; rewriting works.
    assert sorted(p.name for p in report.iterdir()) == ["lottery.png", "lottery.svg", "summary.md"]
    assert write_report(run_dir) == paths


def test_write_report_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(TicketlabError) as info:
        write_report(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "results.csv") in message and "\n" not in message
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(TicketlabError, match="results.csv"):
        write_report(tmp_path)
    (tmp_path / "results.csv").write_text(", ".join(COLUMNS) + "\n")
    with pytest.raises(TicketlabError, match="results.csv"):
        write_report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_figure_single_trial_and_few_points(tmp_path: Path) -> None:
    rows = [r for r in synthetic_rows() if r["trial"] == 0 and r["level"] <= 1]
    stem = tmp_path / "sub" / "fig"
    paths = draw_lottery_figure(summarize_results(rows), stem, title="tiny")
    assert paths == [tmp_path / "sub" / "fig.png", tmp_path / "sub" / "fig.svg"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_many_levels_thin_ticks(tmp_path: Path) -> None:
    rows = [make_row("iterative_reset", t, lvl) for t in range(2) for lvl in range(20)]
    summary = summarize_results(rows)
    from ticketlab.report.figures import build_lottery_figure

    fig = build_lottery_figure(summary)
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert 2 <= len(labels) <= 8
        assert labels[0] == "100"
        lo, hi = ax.get_xlim()
        assert lo > hi  # decreasing left to right
        assert ax.get_xscale() == "log"


def test_no_torch_no_pyplot() -> None:
    code = (
        "import sys, matplotlib; backend = dict.__getitem__(matplotlib.rcParams, 'backend');"
        "import ticketlab.report, ticketlab.report.figures, ticketlab.report.table;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported';"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("payload, expected", [
    (b"\xff\xfetrial,level\n", "is not a CSV file"),
    (b"trial,level,step,weights_distance\n0,1,10,0.5\n", "missing column(s) channels_distance"),
    (b"trial,level,step,weights_distance,channels_distance\n0,1,ten,0.5,\n", "column 'step' is 'ten'"),
    (b"trial,level,step,weights_distance,channels_distance\n0,1,10\n", "expected 5 fields, got 3"),
])
def test_a_damaged_early_bird_file_is_one_error(run_dir: Path, payload: bytes, expected: str) -> None:
    (run_dir / "early_bird_distances.csv").write_bytes(payload)
    with pytest.raises(TicketlabError, match=r"early_bird_distances\.csv") as caught:
        write_report(run_dir)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_report_through_the_cli_refuses_a_damaged_results_csv_in_one_line(run_dir: Path, capsys) -> None:
    from ticketlab.cli import main

    (run_dir / "results.csv").write_bytes(b"\xff" + (run_dir / "results.csv").read_bytes())
    assert main(["report", str(run_dir)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not UTF-8" in lines[0] and lines[0].startswith("ticketlab: error: ")
