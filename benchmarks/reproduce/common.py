"""What every reproduction script shares: its command line, running ticketlab, aggregating over trials, and
writing one table (CSV + markdown) and one figure into its output directory.

A script only calls ticketlab's Python API (`find_tickets`, `rewind_sweep`, `stability_analysis`,
`transfer_tickets`), whose run directories resume after a kill, so re-running a killed script continues it and
re-running a finished one trains nothing. Everything a script writes lives under `--out`:

    <out>/runs/...      ticketlab run directories (results.csv, jobs, analyses)
    <out>/table.csv     one row per (group, x): mean, sample std, min, max and the trial count of a metric
    <out>/table.md      the same table in markdown
    <out>/figure.png    the metric against x, one line per group, bars min..max over trials

Table rows name the run directory (`run`, relative to `<out>/runs`), the CSV in it (`source`), the rows of that
CSV they aggregate (`select`: `column=value&...`, one row per trial) and the column (`metric`), so each number can
be recomputed from the run's own CSV.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

TABLE_COLUMNS = ("run", "source", "select", "group", "x", "x_label", "metric", "mean", "std", "min", "max",
                 "trials")


@dataclass(frozen=True)
class Outputs:
    """What a script wrote: its output directory, table and figure."""

    out_dir: Path
    table_csv: Path
    table_md: Path
    figure: Path
    wall_time_s: float


def parse_args(description: str, argv: Sequence[str] | None, default_out: str) -> argparse.Namespace:
    """--quick, --out, --trials (None: the protocol's), --workers: the flags every script takes."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="seconds on tiny generated data (the test suite runs this), not the paper protocol")
    parser.add_argument("--out", default=None, help=f"output directory (default {default_out}, or "
                                                    f"{default_out}_quick with --quick)")
    parser.add_argument("--trials", type=int, default=None, help="trials (default: the protocol's)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that train the jobs, transfers and stability copies (full protocol: 2)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = default_out + ("_quick" if args.quick else "")
    args.out = Path(args.out)
    if args.trials is not None and args.trials < 1:
        parser.error(f"--trials {args.trials} must be at least 1")
    return args


def runs_root(out_dir: Path) -> Path:
    return out_dir / "runs"


def find(config, out_dir: Path, *, workers: int = 1, **kwargs):
    """`ticketlab.find_tickets` into `<out>/runs`, quietly (the report is drawn here instead)."""
    import ticketlab

    kwargs.setdefault("progress", False)
    kwargs.setdefault("report", False)
    return ticketlab.find_tickets(config, root=runs_root(out_dir), workers=workers, **kwargs)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: Any) -> float:
    """A CSV cell as a float (NaN when empty)."""
    return float(text) if text not in (None, "") else math.nan


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one trial), min, max and count of finite values."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "trials": 0}
    return {"mean": statistics.fmean(finite), "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
            "min": min(finite), "max": max(finite), "trials": len(finite)}


def aggregate(rows: Iterable[Mapping[str, str]], *, run: str, source: str, group_by: Sequence[str], x: str,
              metric: str, x_label: str | None = None, label: Any = None,
              x_value: float | None = None) -> list[dict]:
    """Table rows from CSV rows (one per trial), grouped by the `group_by` columns: `metric` aggregated with
    `spread`, `x` the mean of the x column over the group's rows. `source` is the CSV (relative to the run
    directory) the rows came from; `label(row)` names a group in the figure (default: its group_by values);
    `x_value` replaces the x column by one number for every group (e.g. the rewind step of a run)."""
    groups: dict[tuple, list[Mapping[str, str]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[column] for column in group_by), []).append(row)
    table = []
    for key, members in groups.items():
        xs = [number(row[x]) if x_value is None else x_value for row in members]
        table.append({"run": run, "source": source,
                      "select": "&".join(f"{column}={value}" for column, value in zip(group_by, key)),
                      "group": label(members[0]) if label else " ".join(key),
                      "x": statistics.fmean(xs), "x_label": x_label or x, "metric": metric,
                      **spread([number(row[metric]) for row in members])})
    return table


def results_table(run_dir: Path, out_dir: Path, metric: str, *, variants: Sequence[str] | None = None,
                  group_prefix: str = "") -> list[dict]:
    """Table rows of a run's results.csv: per variant and level, `metric` over trials against weights remaining.
    Level 0 (the dense network, repeated under every variant) is kept once, labelled 'dense'."""
    rows = read_csv(run_dir / "results.csv")
    wanted = [row for row in rows if variants is None or row["variant"] in variants]
    first = wanted[0]["variant"] if wanted else None
    wanted = [row for row in wanted if row["level"] != "0" or row["variant"] == first]
    return aggregate(wanted, run=str(run_dir.relative_to(runs_root(out_dir))), source="results.csv",
                     group_by=("variant", "level"), x="weights_remaining_percent", metric=metric,
                     x_label="weights remaining (%)",
                     label=lambda row: group_prefix + ("dense" if row["level"] == "0" else row["variant"]))


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_table(out_dir: Path, rows: Sequence[Mapping[str, Any]], *, title: str, note: str = "") -> tuple[Path, Path]:
    """table.csv and table.md (a title, a note, then the rows) in `out_dir`, written atomically."""
    from ticketlab.store import atomic_write_bytes, write_csv

    csv_path = write_csv(out_dir / "table.csv", TABLE_COLUMNS,
                         [{column: format_cell(row[column]) if isinstance(row[column], float) else row[column]
                           for column in TABLE_COLUMNS} for row in rows])
    shown = ("run", "select", "group", "x", "metric", "mean", "std", "min", "max", "trials")
    lines = [f"# {title}", ""] + ([note, ""] if note else [])
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(format_cell(row[column]) for column in shown) + " |" for row in rows]
    md_path = out_dir / "table.md"
    atomic_write_bytes(md_path, ("\n".join(lines) + "\n").encode())
    return csv_path, md_path


def write_figure(out_dir: Path, rows: Sequence[Mapping[str, Any]], *, title: str, log_x: bool = False,
                 reverse_x: bool = False, panels: Sequence[str] | None = None,
                 y_labels: Mapping[str, str] | None = None) -> Path:
    """figure.png: for each metric (a panel each, or only `panels`), mean against x per group, bars min..max;
    `y_labels` names what a metric column holds (default: the column's name)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = list(panels) if panels else list(dict.fromkeys(row["metric"] for row in rows))
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        chosen = [row for row in rows if row["metric"] == metric]
        groups = list(dict.fromkeys(row["group"] for row in chosen))
        families = list(dict.fromkeys(_family(group) for group in groups))  # a method and its controls: one colour
        colours = plt.cm.tab20.colors if len(families) > 10 else plt.cm.tab10.colors
        for group in groups:
            index = families.index(_family(group))
            points = sorted((row for row in chosen if row["group"] == group), key=lambda row: row["x"])
            xs, means = [row["x"] for row in points], [row["mean"] for row in points]
            low = [row["mean"] - row["min"] for row in points]
            high = [row["max"] - row["mean"] for row in points]
            axis.errorbar(xs, means, yerr=[low, high], marker="o", markersize=3, capsize=2, label=group,
                          color=colours[index % len(colours)], linestyle=_line_style(group))
        if log_x:
            _plain_log_axis(axis, [row["x"] for row in chosen])
        if reverse_x:
            axis.invert_xaxis()
        axis.set_xlabel(chosen[0]["x_label"] if chosen else "")
        axis.set_ylabel((y_labels or {}).get(metric, metric.replace("_", " ")))
        axis.grid(alpha=0.3)
        if len(groups) > 6:  # beside the axes, where it hides no curve
            axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            axis.legend(fontsize=7)
    if any(len(dict.fromkeys(row["group"] for row in rows if row["metric"] == metric)) > 6 for metric in metrics):
        figure.set_size_inches(5.5 * len(metrics) + 1.8, 4)
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, out_dir)


def save_figure(figure, out_dir: Path) -> Path:
    """OUT/figure.png written whole (a temporary file renamed over it, so a kill never leaves half a PNG)."""
    from matplotlib import pyplot as plt

    figure.tight_layout()
    path = out_dir / "figure.png"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)
    os.replace(temporary, path)
    return path


def _plain_log_axis(axis, xs: Sequence[float]) -> None:
    """A log x axis labelled 100, 50, 20, 10, 5, ... (weights remaining reads as percents, not 4x10^1)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    axis.set_xscale("log")
    positive = [x for x in xs if x > 0]
    if not positive:
        return
    ticks = [mantissa * 10.0 ** exponent for exponent in range(-3, 4) for mantissa in (1, 2, 5)]
    shown = [tick for tick in ticks if min(positive) / 1.5 <= tick <= max(positive) * 1.5]
    axis.xaxis.set_major_locator(FixedLocator(shown))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xticklabels([f"{tick:g}" for tick in shown])


def _family(group: str) -> str:
    """The method a control belongs to ('snip' for 'snip_shuffled' and 'snip_reinit'), which names its colour."""
    for control in ("_shuffled", "_reinit"):
        if group.endswith(control) and len(group) > len(control):
            return group[: -len(control)]
    return group


def _line_style(group: str) -> str:
    """Controls dashed or dotted, so a figure of many variants stays readable."""
    if "reinit" in group or "random" in group:
        return "--"
    return ":" if "shuffled" in group else "-"


def finish(out_dir: Path, rows: Sequence[Mapping[str, Any]], *, title: str, note: str, started: float,
           log_x: bool = True, reverse_x: bool = True, panels: Sequence[str] | None = None,
           draw: Callable[[Path, Sequence[Mapping[str, Any]], str], Path] | None = None,
           y_labels: Mapping[str, str] | None = None) -> Outputs:
    """Write the table and the figure (`draw(out_dir, rows, title)` where a result is not curves against
    sparsity), print where they are, and return the Outputs."""
    csv_path, md_path = write_table(out_dir, rows, title=title, note=note)
    figure = (draw(out_dir, rows, title) if draw is not None else
              write_figure(out_dir, rows, title=title, log_x=log_x, reverse_x=reverse_x, panels=panels,
                           y_labels=y_labels))
    wall = time.time() - started
    print(f"{title}: {md_path} and {figure} ({wall:.0f} s)")
    return Outputs(out_dir, csv_path, md_path, figure, wall)


def tiny_images(seed: int = 0, classes: int = 10, size: int = 8, train: int = 600, test: int = 200,
                validation: int = 100):
    """A small learnable image problem for --quick: per-class 1 x size x size templates plus noise (seeded)."""
    import torch

    from ticketlab.data.splits import make_splits

    generator = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 1, size, size, generator=generator)
    labels = torch.randint(0, classes, (train + test,), generator=generator)
    inputs = templates[labels] + 0.8 * torch.randn(train + test, 1, size, size, generator=generator)
    return make_splits(inputs[:train], labels[:train], inputs[train:], labels[train:], validation_size=validation,
                       num_classes=classes)


def fashion_mnist_dir() -> str:
    """Debian's dataset-fashion-mnist (the full protocols read it; `apt-get install -y dataset-fashion-mnist`)."""
    return "/usr/share/datasets/fashion-mnist"


def shared_data(name: str) -> str:
    """A file or folder of ../shared/data (Tiny Shakespeare, Multi30k), found from this file or $TICKETLAB_SHARED."""
    base = os.environ.get("TICKETLAB_SHARED")
    candidates = [Path(base) / "data"] if base else []
    candidates += [parent / "shared" / "data" for parent in Path(__file__).resolve().parents]
    candidates.append(Path("/work/shared/data"))
    for folder in candidates:
        if (folder / name).exists():
            return str(folder / name)
    raise SystemExit(f"reproduce: error: {name} not found under ../shared/data; set TICKETLAB_SHARED")
