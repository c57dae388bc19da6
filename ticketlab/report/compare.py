"""`ticketlab compare RUN_DIR...`: several runs' lottery curves on one figure, and what differs between them.

One variant's curve per run (the winning ticket, iterative_reset, by default): the early-stop test metric and
the early-stop iteration against weights remaining, with min-max error bars over trials. Runs of different
tasks or metrics cannot share an axis and are refused. Writes comparison.png, comparison.svg and
comparison.html (self-contained: the PNG inline, the table of config differences, the numbers).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ticketlab.errors import ConfigError
from ticketlab.lottery.variants import winning_ticket
from ticketlab.store import atomic_write_bytes  # atomic, with the umask's mode (0644 under umask 022)

OUTPUT_STEM = "comparison"
_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "tab:gray")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


@dataclass(frozen=True)
class ComparedRun:
    """One run of a comparison: its directory, label, config and summary rows of the compared variant."""

    run_dir: Path
    label: str
    config: dict
    entries: list[dict]  # summarize_results entries of the variant, by level (level 0: the dense network)


def compare_runs(run_dirs: list[str | os.PathLike[str]], labels: list[str] | None = None,
                 output: str | os.PathLike[str] = OUTPUT_STEM, variant: str | None = None) -> dict[str, Path]:
    """Draw and write the comparison of `run_dirs` into the folder `output`; returns {"png", "svg", "html"}.

    `labels` name the runs in the legend (default: the values that tell them apart, else their directory names).
    ConfigError for fewer than two runs, a directory given twice, one that is not a finished-enough run (no
    config.json or no results), a label count that does not match, runs of different tasks or metrics, or a
    `variant` not in every run.
    """
    from ticketlab.report.config_diff import differences

    configs, summaries = _read_runs(run_dirs, labels)
    variant = _shared_variant(summaries, variant, run_dirs)
    names = labels or _default_labels(configs, [Path(path) for path in run_dirs])
    compared = [ComparedRun(Path(path), name, config, [e for e in summary if e["variant"] == variant])
                for path, name, config, summary in zip(run_dirs, names, configs, summaries)]
    metric = _one_metric(summaries, run_dirs)
    for path in run_dirs:  # what runs can be compared is settled; now each is checked as `report` checks a run
        _check_against_the_run(Path(path))
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = _draw(compared, metric, variant, out_dir / OUTPUT_STEM)
    html_path = out_dir / f"{OUTPUT_STEM}.html"
    atomic_write_bytes(html_path, _page(compared, metric, variant, differences(*configs), png).encode("utf-8"))
    return {"png": png, "svg": svg, "html": html_path}


def _read_runs(run_dirs, labels) -> tuple[list[dict], list[list[dict]]]:
    from ticketlab.errors import TicketlabError
    from ticketlab.lottery.results_csv import read_results
    from ticketlab.report.results import summarize_results, with_dense_level
    from ticketlab.report.run_state import is_run_directory, stored_config

    if len(run_dirs) < 2:
        raise ConfigError(f"compare needs at least two run directories, got {len(run_dirs)}")
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"--labels gives {len(labels)} label{'s' if len(labels) != 1 else ''} for "
                          f"{len(run_dirs)} run directories; give one label per run")
    seen: set[Path] = set()
    configs, summaries = [], []
    for text in run_dirs:
        path = Path(text)
        if not path.is_dir():
            problem = "is not a directory" if path.exists() else "does not exist"
            raise ConfigError(f"run directory {str(text)!r} {problem}")
        if path.resolve() in seen:
            raise ConfigError(f"run directory {str(text)!r} is given twice")
        seen.add(path.resolve())
        config = stored_config(path) if is_run_directory(path) else None
        if config is None:
            raise ConfigError(f"{str(text)!r} is not a run directory (no readable config.json)")
        if not (path / "results.csv").is_file():
            raise ConfigError(f"run directory {str(text)!r} has no results yet (no results.csv)")
        try:
            summary = with_dense_level(summarize_results(read_results(path / "results.csv")))
        except TicketlabError as error:
            raise ConfigError(f"run directory {str(text)!r}: {error}") from None
        if not summary:
            raise ConfigError(f"run directory {str(text)!r} has no finished jobs yet")
        configs.append(config)
        summaries.append(summary)
    tasks = {str(config.get("task")) for config in configs}
    if len(tasks) > 1:
        raise ConfigError(f"runs of different tasks ({', '.join(sorted(tasks))}) cannot be compared on one axis; "
                          "compare runs of one task")
    return configs, summaries


def _check_against_the_run(path: Path) -> None:
    """ConfigError naming the run unless its config.json, sealed results and results.csv rows agree
    (`ticketlab.report.report.read_run_results`, the reader of `ticketlab report`)."""
    from ticketlab.errors import TicketlabError
    from ticketlab.report.report import read_run_results

    try:
        read_run_results(path)
    except TicketlabError as error:
        raise ConfigError(f"run directory {str(path)!r}: {error}") from None


def _one_metric(summaries: list[list[dict]], run_dirs):
    from ticketlab.report.results import summary_metric

    metrics = {str(entry.get("metric") or "accuracy") for summary in summaries for entry in summary}
    if len(metrics) > 1:
        raise ConfigError(f"runs measure different metrics ({', '.join(sorted(metrics))}); compare runs of one metric")
    return summary_metric(summaries[0])


def _shared_variant(summaries: list[list[dict]], variant: str | None, run_dirs) -> str:
    present = [{entry["variant"] for entry in summary} for summary in summaries]
    shared = set.intersection(*present)
    if variant is not None:
        if variant not in shared:
            missing = [str(path) for path, names in zip(run_dirs, present) if variant not in names]
            raise ConfigError(f"--variant {variant!r} has no results in {', '.join(missing)}; allowed: "
                              f"{', '.join(sorted(shared)) or 'none (the runs share no variant)'}")
        return variant
    if winning_ticket() in shared:  # the default: the winning ticket
        return winning_ticket()
    if not shared:
        raise ConfigError("the runs share no variant with results; nothing to compare")
    from ticketlab.lottery.variants import variant_sort_key

    return sorted(shared, key=variant_sort_key)[0]


def _default_labels(configs: list[dict], run_dirs: list[Path]) -> list[str]:
    """The values that tell the runs apart ('prune.rewind=500it'), when at most two fields do; else the names."""
    from ticketlab.report.config_diff import differences, format_value

    rows = [row for row in differences(*configs) if row[0] not in ("variants", "trials")]
    if 0 < len(rows) <= 2:
        labels = [", ".join(f"{row[0]}={format_value(row[index + 1])}" for row in rows)
                  for index in range(len(configs))]
        if len(set(labels)) == len(labels):
            return labels
    names = [path.resolve().name for path in run_dirs]
    return names if len(set(names)) == len(names) else [str(path) for path in run_dirs]


def _draw(runs: list[ComparedRun], metric, variant: str, stem: Path) -> list[Path]:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, NullLocator

    from ticketlab.report.figures import format_percent, save_figure
    from ticketlab.lottery.variants import variant_label

    scale = 100.0 if metric.percent else 1.0
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    xs_all = []
    for index, run in enumerate(runs):
        entries = sorted(run.entries, key=lambda entry: int(entry["level"]))
        xs = np.array([float(entry["weights_remaining_percent"]) for entry in entries])
        xs_all += [x for x in xs if math.isfinite(x) and x > 0]
        style = dict(color=_COLOURS[index % len(_COLOURS)], marker=_MARKERS[index % len(_MARKERS)], markersize=4,
                     capsize=2, label=run.label, linewidth=1.5)
        for ax, column, factor in ((left, "early_stop_test_metric", scale), (right, "early_stop_iteration", 1.0)):
            mean = factor * np.array([float(entry[f"{column}_mean"]) for entry in entries])
            low = factor * np.array([float(entry[f"{column}_min"]) for entry in entries])
            high = factor * np.array([float(entry[f"{column}_max"]) for entry in entries])
            ax.errorbar(xs, mean, yerr=[np.maximum(mean - low, 0), np.maximum(high - mean, 0)], **style)
    ticks = sorted({float(format_percent(x)) for x in xs_all}, reverse=True)
    if len(ticks) > 8:
        ticks = [ticks[int(i)] for i in np.unique(np.round(np.linspace(0, len(ticks) - 1, 8)))]
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlim(max(xs_all) * 1.15, min(xs_all) / 1.15)
        ax.set_xticks(ticks, [format_percent(tick) for tick in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("Weights remaining (%)")
        ax.grid(True, alpha=0.35)
    if metric.log_scale:
        left.set_yscale("log")
    left.set_ylabel(f"Early-stop {metric.axis_label()}")
    left.set_title(f"{metric.label.capitalize()} at early stopping")
    right.set_ylabel("Early-stop iteration")
    right.set_title(f"Early-stopping iteration ({metric.early_stop})")
    left.legend(fontsize=8)
    figure.suptitle(f"{variant_label(variant)}: {len(runs)} runs, error bars min–max over trials")
    return save_figure(figure, stem)


def _page(runs: list[ComparedRun], metric, variant: str, rows: list[tuple], png: Path) -> str:
    import base64

    from ticketlab.report.config_diff import format_value
    from ticketlab.report.html_report import STYLE
    from ticketlab.lottery.variants import variant_label

    scale = 100.0 if metric.percent else 1.0
    decimals = 2 if metric.percent else 3
    heads = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    shown = [row for row in rows if row[0] not in ("variants", "trials")] + [
        row for row in rows if row[0] in ("variants", "trials")]
    diff = "\n".join("<tr><td><code>" + escape(row[0]) + "</code></td>"
                     + "".join(f"<td>{escape(format_value(value))}</td>" for value in row[1:]) + "</tr>"
                     for row in shown) or f"<tr><td colspan=\"{len(runs) + 1}\">none: the configs are equal</td></tr>"
    levels = sorted({int(entry["level"]) for run in runs for entry in run.entries})
    numbers = []
    for level in levels:
        cells = []
        for run in runs:
            entry = next((e for e in run.entries if int(e["level"]) == level), None)
            if entry is None or not math.isfinite(float(entry["early_stop_test_metric_mean"])):
                cells.append("<td>–</td>")
                continue
            mean, std = scale * entry["early_stop_test_metric_mean"], scale * entry["early_stop_test_metric_std"]
            cells.append(f"<td class=\"num\">{format(float(entry['weights_remaining_percent']), '.3g')}%: "
                         f"{mean:.{decimals}f} ± {std:.{decimals}f} @ {entry['early_stop_iteration_mean']:.0f}</td>")
        numbers.append(f"<tr><td class=\"num\">{level}</td>" + "".join(cells) + "</tr>")
    paths = "\n".join(f"<li>{escape(run.label)}: <code>{escape(str(run.run_dir.resolve()))}</code></li>"
                      for run in runs)
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    unit = " %" if metric.percent else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>ticketlab comparison</title><style>{STYLE}</style></head>\n<body>\n"
        f"<h1>Comparison of {len(runs)} runs: {escape(variant_label(variant))}</h1>\n<ul>{paths}</ul>\n"
        f"<figure><img src=\"data:image/png;base64,{image}\" alt=\"comparison figure\">"
        f"<figcaption>{escape(metric.label)} and early-stop iteration against weights remaining; error bars span "
        "min–max over trials</figcaption></figure>\n"
        f"<h2>What differs between the configs</h2>\n<div class=\"scroll\"><table><tr><th>field</th>{heads}</tr>\n"
        f"{diff}\n</table></div>\n"
        f"<h2>Numbers</h2>\n<p class=\"note\">Per level: weights remaining: early-stop {escape(metric.label)}{unit} "
        "(mean ± std over trials) @ early-stop iteration (mean).</p>\n"
        f"<div class=\"scroll\"><table><tr><th>level</th>{heads}</tr>\n" + "\n".join(numbers)
        + "\n</table></div>\n</body></html>\n")

