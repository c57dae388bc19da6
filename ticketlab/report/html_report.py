"""report.html: one self-contained page per run directory, to read on a laptop, print, or send to a colleague.

It holds the run's state (finished, partial, damaged files found by `verify_run`), the results table with error
bars, every figure the run has (PNGs under the run directory, embedded as base64), the resolved config and what
differs from its preset, and provenance (versions, commit, host, device, times). Only the standard library
writes it (string templates and html.escape); the page needs no network and no JavaScript.
"""

from __future__ import annotations

import base64
import math
import os
import time
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

from ticketlab.store import atomic_write_bytes  # atomic, with the umask's mode (0644 under umask 022)

REPORT_FILE = "report.html"
MAX_DAMAGE_LINES = 50
# Figures first in this order (the headline figure, then the rest of the report), then analyses by path.
_FIGURE_ORDER = ("report/lottery.png", "report/training_cost.png", "report/learning_curves.png", "report/at_init.png",
                 "report/early_bird.png")
_SKIPPED_DIRS = ("trial_", "tensorboard", ".")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fff;margin:0 auto;
max-width:62rem;padding:1rem 1.25rem 3rem;line-height:1.45}
h1{font-size:1.5rem;margin:.5rem 0 .25rem;word-break:break-all}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}h3{font-size:1rem;margin-top:1.25rem}
.state{display:inline-block;padding:.15rem .6rem;border-radius:.8rem;font-weight:600;font-size:.9rem}
.finished{background:#dff3e3;color:#14532d}.partial{background:#fff4d6;color:#7a4b00}
.damaged,.unreadable{background:#fde2e1;color:#8a1c1c}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.875rem;margin:.5rem 0}
th,td{border-bottom:1px solid #e5e5e5;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-size:.85em}.wrap{word-break:break-all}figure{margin:1rem 0;break-inside:avoid;page-break-inside:avoid}
figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
.note{font-size:.85rem;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(19rem,1fr));gap:0 1.5rem;align-items:start}
.grid table{width:100%}.grid h4{margin:.75rem 0 0;font-size:.9rem}
pre{white-space:pre-wrap;font-size:.8rem;background:#f8f8f8;padding:.5rem}
@media print{body{max-width:none;padding:0;font-size:10pt}.scroll{overflow:visible}h2,h3,h4{break-after:avoid}
table{font-size:8pt}tr{break-inside:avoid}a{color:inherit;text-decoration:none}}
"""


def write_html_report(run_dir: str | os.PathLike[str], verify: bool = True, state=None) -> Path:
    """Write `run_dir/report.html` atomically and return its path. `verify` False skips hashing the artifacts
    (the page then does not say whether files are damaged); `state`: the run's RunState, when already read."""
    run = Path(run_dir)
    path = run / REPORT_FILE
    atomic_write_bytes(path, render_html_report(run, verify, state).encode("utf-8"))
    return path


def render_html_report(run_dir: Path, verify: bool = True, state=None) -> str:
    """The page's HTML for a run directory (TicketlabError if it is not one)."""
    from ticketlab.lottery.provenance import read_sessions
    from ticketlab.report.run_state import is_run_directory, read_run_state

    if is_run_directory(run_dir):
        state = state or read_run_state(run_dir, verify=verify)
        state_section, config = _state_section(state), state.config
    else:  # a folder holding only results.csv (copied, or written by another tool)
        state_section, config = "<h2>State</h2>\n<p>Unknown: the folder has no config.json.</p>", None
    sessions = read_sessions(run_dir)
    name = Path(run_dir).resolve().name
    sections = [
        f"<h1>{escape(name)}</h1>",
        state_section,
        _results_section(Path(run_dir)),
        _figures_section(Path(run_dir)),
        _config_section(config, sessions),
        _provenance_section(Path(run_dir), sessions),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>ticketlab report: {escape(name)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(section for section in sections if section)
            + f"\n<p class=\"note\">Written by ticketlab on {escape(_utc(time.time()))}.</p>\n</body></html>\n")


# --- state ------------------------------------------------------------------------------------------


def _state_section(state) -> str:
    variants = ", ".join(state.variants) or "?"
    facts = (f"task <b>{escape(state.task)}</b>, {state.trials} trial{'s' if state.trials != 1 else ''}, "
             f"variants {escape(variants)}; levels done {state.levels_done} of {state.levels_planned}; "
             f"{state.jobs_done} of {state.jobs_planned} jobs finished")
    if state.state == "unreadable":
        detail = "config.json cannot be read: the run's plan is unknown."
    elif state.state == "partial":
        detail = (f"{state.jobs_left} job{'s' if state.jobs_left != 1 else ''} left; run the same "
                  "<code>ticketlab find</code> command again to finish it.")
    elif state.state == "damaged":
        count = len(state.damage)
        detail = f"{count} damaged file{'s' if count != 1 else ''} (<code>ticketlab verify</code>)"
    else:
        detail = "every planned job has finished" + ("" if state.damage is not None else " (files not verified)")
    text = (f"<p><span class=\"state {state.state}\">{state.state}</span> {detail}</p>\n"
            f"<p>{facts}; {_size(state.size_bytes)} on disk, last change {escape(_utc(state.last_change))}.</p>")
    if state.damage:
        lines = "\n".join(f"<li><code>{escape(str(item))}</code></li>" for item in state.damage[:MAX_DAMAGE_LINES])
        more = len(state.damage) - MAX_DAMAGE_LINES
        text += (f"\n<ul>{lines}</ul>" + (f"<p>…and {more} more.</p>" if more > 0 else "")
                 + "<p>Running the same <code>ticketlab find</code> command recomputes the damaged jobs.</p>")
    return "<h2>State</h2>\n" + text


# --- results ----------------------------------------------------------------------------------------


def _results_section(run_dir: Path) -> str:
    from ticketlab.errors import TicketlabError
    from ticketlab.lottery.results_csv import read_results
    from ticketlab.report.results import summarize_results, summary_metric, with_dense_level

    csv_path = run_dir / "results.csv"
    if not csv_path.is_file():
        return "<h2>Results</h2>\n<p>No results yet (no results.csv).</p>"
    try:
        summary = with_dense_level(summarize_results(read_results(csv_path)))
        metric = summary_metric(summary)
    except TicketlabError as error:
        return f"<h2>Results</h2>\n<p>results.csv cannot be read: {escape(str(error))}</p>"
    if not summary:
        return "<h2>Results</h2>\n<p>No finished jobs yet.</p>"
    return ("<h2>Results</h2>\n" + results_table(summary, metric)
            + f"<p class=\"note\">Test {escape(metric.label.removeprefix('test '))} at the early-stopping iteration "
            f"({escape(metric.early_stop)}), mean ± std over trials (population std); the bar spans the minimum "
            "to the maximum over trials, the dark part mean ± std. Level 0 is the dense network.</p>")


def results_table(summary: Sequence[Mapping[str, Any]], metric) -> str:
    """One row per variant and level: weights remaining, the metric with an inline SVG error bar, iterations."""
    from ticketlab.lottery.variants import variant_label
    from ticketlab.report.results import ordered_variants

    scale = 100.0 if metric.percent else 1.0
    unit = " %" if metric.percent else ""
    column = "early_stop_test_metric"
    values = [scale * entry[f"{column}_{name}"] for entry in summary for name in ("min", "max")
              if _finite(entry.get(f"{column}_{name}"))]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    rows = []
    for variant in ordered_variants(summary):
        entries = sorted((entry for entry in summary if entry["variant"] == variant), key=lambda e: int(e["level"]))
        for index, entry in enumerate(entries):
            head = (f"<th rowspan=\"{len(entries)}\">{escape(variant_label(variant))}</th>" if index == 0 else "")
            rows.append(
                f"<tr>{head}<td class=\"num\">{int(entry['level'])}</td>"
                f"<td class=\"num\">{_number(entry['weights_remaining_percent'], 3)}</td>"
                f"<td class=\"num\">{_mean_std(entry, column, scale)}</td>"
                f"<td class=\"num\">{_range(entry, column, scale)}</td>"
                f"<td>{_error_bar(entry, column, scale, low, high)}</td>"
                f"<td class=\"num\">{_number(entry.get('early_stop_iteration_mean'), 0, fixed=True)}</td>"
                f"<td class=\"num\">{_mean_std(entry, 'final_test_metric', scale)}</td>"
                f"<td class=\"num\">{int(entry.get('n', 0))}</td></tr>")
    header = ("<tr><th>variant</th><th>level</th><th>weights remaining %</th>"
              f"<th>{escape(metric.label)}{unit} (mean ± std)</th><th>min – max</th><th>error bar</th>"
              f"<th>early-stop iteration (mean)</th><th>final {escape(metric.label)}{unit}</th><th>trials</th></tr>")
    return f"<div class=\"scroll\"><table>\n{header}\n" + "\n".join(rows) + "\n</table></div>"


def _error_bar(entry: Mapping[str, Any], column: str, scale: float, low: float, high: float) -> str:
    mean, std = entry.get(f"{column}_mean"), entry.get(f"{column}_std")
    least, most = entry.get(f"{column}_min"), entry.get(f"{column}_max")
    if not _finite(mean, least, most):
        return ""
    width, pad = 120.0, 4.0
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return pad + (width - 2 * pad) * (scale * value - low) / span

    std = std if _finite(std) else 0.0
    return (f"<svg width=\"{width:.0f}\" height=\"14\" viewBox=\"0 0 {width:.0f} 14\" role=\"img\" "
            f"aria-label=\"range {scale * least:.4g} to {scale * most:.4g}\">"
            f"<line x1=\"{x(least):.1f}\" y1=\"7\" x2=\"{x(most):.1f}\" y2=\"7\" stroke=\"#888\" stroke-width=\"1.5\"/>"
            f"<rect x=\"{x(mean - std):.1f}\" y=\"3\" width=\"{max(x(mean + std) - x(mean - std), 1.5):.1f}\" "
            f"height=\"8\" fill=\"#3b6fb6\" opacity=\".55\"/>"
            f"<circle cx=\"{x(mean):.1f}\" cy=\"7\" r=\"2.5\" fill=\"#1b3d6e\"/></svg>")


def _mean_std(entry: Mapping[str, Any], column: str, scale: float) -> str:
    mean, std = entry.get(f"{column}_mean"), entry.get(f"{column}_std")
    if not _finite(mean):
        return "–"
    decimals = 2 if scale == 100.0 else 3
    return f"{scale * mean:.{decimals}f}" + (f" ± {scale * std:.{decimals}f}" if _finite(std) else "")


def _range(entry: Mapping[str, Any], column: str, scale: float) -> str:
    least, most = entry.get(f"{column}_min"), entry.get(f"{column}_max")
    if not _finite(least, most):
        return "–"
    decimals = 2 if scale == 100.0 else 3
    return f"{scale * least:.{decimals}f} – {scale * most:.{decimals}f}"


# --- figures ----------------------------------------------------------------------------------------


def run_figures(run_dir: Path) -> list[Path]:
    """Every PNG the report and the analyses wrote under the run directory (not inside job or TensorBoard
    directories), the report's own figures first."""
    found = []
    for folder, dirs, files in os.walk(run_dir):
        dirs[:] = sorted(name for name in dirs if not name.startswith(_SKIPPED_DIRS))
        found += [Path(folder) / name for name in files if name.endswith(".png") and not name.startswith(".")]

    def order(path: Path) -> tuple[int, str]:
        relative = path.relative_to(run_dir).as_posix()
        return (_FIGURE_ORDER.index(relative) if relative in _FIGURE_ORDER else len(_FIGURE_ORDER), relative)

    return sorted(found, key=order)


def _figures_section(run_dir: Path) -> str:
    figures = run_figures(run_dir)
    if not figures:
        return "<h2>Figures</h2>\n<p>No figures yet (<code>ticketlab report RUN_DIR</code> draws them).</p>"
    parts = ["<h2>Figures</h2>"]
    for path in figures:
        try:
            payload = base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            continue
        relative = path.relative_to(run_dir).as_posix()
        title = path.stem.replace("_", " ")
        parts.append(f"<figure><img src=\"data:image/png;base64,{payload}\" alt=\"{escape(title)}\">"
                     f"<figcaption>{escape(title)} (<code>{escape(relative)}</code>)</figcaption></figure>")
    for path in sorted((run_dir / "report").glob("*.md")):
        if path.name != "summary.md":
            parts.append(f"<h3>{escape(path.stem.replace('_', ' '))}</h3>\n"
                         f"<pre>{escape(path.read_text(encoding='utf-8', errors='replace'))}</pre>")
    return "\n".join(parts)


# --- config -----------------------------------------------------------------------------------------


def _config_section(config: dict | None, sessions: list[dict]) -> str:
    from ticketlab.report.config_diff import flatten, format_value, preset_baseline

    if config is None:
        return "<h2>Config</h2>\n<p>No readable config.json.</p>"
    command = next((session.get("command") for session in reversed(sessions) if session.get("command")), None)
    baseline = preset_baseline(config, command)
    parts = ["<h2>Config</h2>"]
    if baseline is not None:
        how = ("the preset its command named" if baseline.recorded else
               "the closest preset of its task (the run does not record a preset)")
        parts.append(f"<h3>Differences from <code>{escape(baseline.preset)}</code>, {how}</h3>")
        if baseline.differences:
            rows = "\n".join(f"<tr><td><code>{escape(name)}</code></td><td>{escape(format_value(ours))}</td>"
                             f"<td>{escape(format_value(theirs))}</td></tr>"
                             for name, ours, theirs in baseline.differences)
            parts.append(f"<div class=\"scroll\"><table><tr><th>field</th><th>this run</th>"
                         f"<th>{escape(baseline.preset)}</th></tr>\n{rows}\n</table></div>")
        else:
            parts.append("<p>None: the run is the preset as it is.</p>")
    sections: dict[str, list[tuple[str, object]]] = {}
    for name, value in sorted(flatten(config).items()):
        section, _, field = name.rpartition(".")
        sections.setdefault(section or "experiment", []).append((field, value))
    tables = []
    for section, fields in sorted(sections.items(), key=lambda item: item[0] != "experiment"):
        rows = "\n".join(f"<tr><td><code>{escape(field)}</code></td><td>{escape(format_value(value))}</td></tr>"
                         for field, value in fields)
        tables.append(f"<div><h4>{escape(section)}</h4><table>\n{rows}\n</table></div>")
    parts.append("<h3>Resolved values</h3>\n<div class=\"grid\">" + "\n".join(tables) + "</div>")
    return "\n".join(parts)


# --- provenance -------------------------------------------------------------------------------------

_SESSION_FIELDS = (("started_at", "started (UTC)"), ("ended_at", "ended (UTC)"), ("wall_s", "wall time"),
                   ("ticketlab", "ticketlab"), ("torch", "torch"), ("python", "Python"), ("git_commit", "git commit"),
                   ("host", "host"), ("device", "device"), ("command", "command"))


def _provenance_section(run_dir: Path, sessions: list[dict]) -> str:
    parts = ["<h2>Provenance</h2>"]
    if not sessions:
        first = _mtime(run_dir / "config.json")
        parts.append("<p>Not recorded: this run directory was written before ticketlab recorded provenance "
                     f"(provenance.json). config.json was written {escape(_utc(first))}.</p>")
        return "\n".join(parts)
    parts.append(f"<p>{len(sessions)} session{'s' if len(sessions) != 1 else ''} of <code>find</code> trained this "
                 "directory; a session without an end was interrupted or is still running.</p>")
    tables = []
    for number, session in enumerate(sessions, 1):
        rows = []
        for field, label in _SESSION_FIELDS:
            value = session.get(field)
            text = _duration(float(value)) if field == "wall_s" and _finite(value) else (
                "not recorded" if value is None else str(value))
            cell = (f"<code class=\"wrap\">{escape(text)}</code>" if field in ("git_commit", "command")
                    else escape(text))
            rows.append(f"<tr><th>{escape(label)}</th><td>{cell}</td></tr>")
        tables.append(f"<div><h4>session {number}</h4><table>\n" + "\n".join(rows) + "\n</table></div>")
    parts.append("<div class=\"grid\">" + "\n".join(tables) + "</div>")
    return "\n".join(parts)


# --- formatting -------------------------------------------------------------------------------------


def _finite(*values: Any) -> bool:
    return all(isinstance(value, (int, float)) and math.isfinite(value) for value in values)


def _number(value: Any, digits: int, fixed: bool = False) -> str:
    if not _finite(value):
        return "–"
    return f"{value:.{digits}f}" if fixed else f"{value:.{digits}g}"


def _utc(seconds: float) -> str:
    if not _finite(seconds):
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("nan")


def _size(size_bytes: int) -> str:
    from ticketlab.report.run_state import format_size

    return format_size(size_bytes)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"
