"""report.html: self-contained (figures inline, nothing fetched), state, results, config against the preset,
provenance; and, where Chromium is installed, rendered headless with every image loaded."""

from __future__ import annotations

import base64
import platform
import re
import subprocess
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.lottery.provenance import PROVENANCE_FILE
from ticketlab.report.html_report import REPORT_FILE, render_html_report, run_figures, write_html_report
from ticketlab.store import read_json, write_json

CHROMIUM = Path("/usr/bin/chromium")
IMG = re.compile(r'<img src="([^"]*)"')


def _html(run_dir: Path) -> str:
    return (run_dir / REPORT_FILE).read_text(encoding="utf-8")


def test_find_writes_a_self_contained_report(tiny_run):
    page = _html(tiny_run)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)  # no network reference
    assert "<script" not in page.lower()
    sources = IMG.findall(page)
    figures = run_figures(tiny_run)
    assert {path.relative_to(tiny_run).as_posix() for path in figures} >= {"report/lottery.png",
                                                                            "report/learning_curves.png"}
    assert len(sources) == len(figures)
    for source, figure in zip(sources, figures):  # each figure inline, byte for byte
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.removeprefix("data:image/png;base64,")) == figure.read_bytes()
    for heading in ("State", "Results", "Figures", "Config", "Provenance"):
        assert f"<h2>{heading}</h2>" in page
    assert "@media print" in page


def test_results_table_has_the_numbers_of_results_csv(tiny_run):
    import csv

    import numpy as np

    with open(tiny_run / "results.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["variant"] == "iterative_reset" and row["level"] == "2"]
    values = 100 * np.array([float(row["early_stop_test_metric"]) for row in rows])
    page = _html(tiny_run)
    assert f"{values.mean():.2f} ± {values.std():.2f}" in page  # population std over the 2 trials
    assert f"{values.min():.2f} – {values.max():.2f}" in page
    assert page.count("<svg") >= 2 * 3  # an error bar per (variant, level)


def test_state_and_provenance_of_a_finished_run(tiny_run):
    page = _html(tiny_run)
    assert '<span class="state finished">finished</span>' in page
    assert "10 of 10 jobs finished" in page  # 2 trials x (dense + 2 levels x 2 variants)
    sessions = read_json(tiny_run / PROVENANCE_FILE)["sessions"]
    assert len(sessions) == 1 and sessions[0]["ended_at"] and sessions[0]["wall_s"] > 0
    assert sessions[0]["torch"] == torch.__version__ and sessions[0]["python"] == platform.python_version()
    for value in (torch.__version__, platform.python_version(), sessions[0]["host"], sessions[0]["started_at"]):
        assert value in page


def test_partial_and_damaged_runs(run_copy):
    (run_copy / "trial_1" / "level_02" / "random_pruning" / "result.json").unlink()
    page = render_html_report(run_copy)
    assert '<span class="state partial">partial</span> 1 job left' in page
    weights = run_copy / "trial_0" / "level_01" / "iterative_reset" / "weights_final.safetensors"
    payload = bytearray(weights.read_bytes())
    payload[-1] ^= 0xFF
    weights.write_bytes(bytes(payload))
    page = render_html_report(run_copy)
    assert '<span class="state damaged">damaged</span>' in page
    assert "weights_final.safetensors: differs from the sha256" in page


def test_config_against_the_recorded_or_closest_preset(run_copy):
    config_bytes = (run_copy / "config.json").read_bytes()
    (run_copy / PROVENANCE_FILE).unlink()  # a run written before provenance was recorded
    page = render_html_report(run_copy)
    assert "closest preset of its task (the run does not record a preset)" in page
    assert "Not recorded: this run directory was written before" in page
    write_json(run_copy / PROVENANCE_FILE, {"sessions": [{"command": "/venv/bin/ticketlab find --preset mnist1d "
                                                                     "--trials 2", "started_at": "x"}]})
    page = render_html_report(run_copy)
    assert "Differences from <code>mnist1d</code>, the preset its command named" in page
    assert "<tr><td><code>train.steps</code></td><td>40it</td>" in page
    assert (run_copy / "config.json").read_bytes() == config_bytes  # the report never rewrites config.json


def test_report_command_writes_report_html(run_copy, capsys):
    (run_copy / REPORT_FILE).unlink()
    assert main(["report", str(run_copy)]) == 0
    assert f"html: {run_copy / REPORT_FILE}" in capsys.readouterr().out
    assert (run_copy / REPORT_FILE).is_file()


def test_report_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().startswith("ticketlab: error: run directory")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (apt-get install -y chromium)")
def test_chromium_renders_every_image_without_the_network(run_copy, tmp_path):
    """Chromium with every host name unresolvable: the page (as written) is screenshotted, and a copy with a
    two-line check appended (the page itself has no script) reports each image's naturalWidth in the DOM;
    an image that failed to load, or needed the network, has naturalWidth 0."""
    page = write_html_report(run_copy)
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND"]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280) and pixels.std() > 0.05  # drawn, not blank
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", "<script>window.onload=()=>{document.body.dataset.widths=[...document.images]"
        ".map(i=>i.complete?i.naturalWidth:0).join(',')}</script></body>"), encoding="utf-8")
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    widths = [int(width) for width in re.search(r'data-widths="([\d,]*)"', dom).group(1).split(",")]
    assert len(widths) == len(run_figures(run_copy)) >= 2
    assert all(width > 0 for width in widths), widths


@pytest.mark.parametrize("command, preset", [
    ("/venv/bin/ticketlab find --preset lenet_mnist --trials 2", "lenet_mnist"),
    ("/venv/bin/ticketlab find --preset=conv2_cifar10", "conv2_cifar10"),
    ("/venv/bin/ticketlab find --trials 2", "mnist1d"),  # find without --preset or --config runs the default
    ("/repo/ticketlab/__main__.py find --config run.toml", None),
    ("python my_script.py", None),
    (None, None),
])
def test_the_preset_a_recorded_command_names(command, preset):
    from ticketlab.report.config_diff import preset_in_command

    assert preset_in_command(command) == preset
