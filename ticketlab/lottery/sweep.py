"""Rewind sweep: one lottery experiment per rewind step k, all sharing one dense run, and a figure comparing them.

The dense job does not depend on k (its seeds and data order do not), so it is trained once, in the first k's run
directory, saving its weights and optimizer state at every k into each run's ``level_00/dense/``; its other files
are then copied there (result.json last, which marks the job done). Each experiment is then an ordinary
`find_tickets` run that finds its dense job finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ticketlab.config import ExperimentConfig, parse_step
from ticketlab.errors import ConfigError
from ticketlab.lottery.experiment import (
    ExperimentResult,
    _data_fingerprint,
    _model_fingerprint,
    resolve_device,
    find_tickets,
    model_factory,
    run_directory,
)
from ticketlab.lottery.estimate import check_against_data
from ticketlab.lottery.integrity import read_sealed_result, repair_run, seal_result
from ticketlab.lottery.run_lock import run_lock
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.jobs import job_graph, run_job
from ticketlab.lottery.keys import DENSE, RESULT_FILE, JobKey
from ticketlab.lottery.variants import check_variants, winning_ticket
from ticketlab.store import atomic_write_bytes, write_csv, write_json
from ticketlab.tasks import load_task
from ticketlab.tasks.base import TaskData, load_task_data
from ticketlab.tasks.metrics import Metric, metric_named

SHARED_DENSE_FILES = ("mask.safetensors", "weights_init.safetensors", "weights_final.safetensors", "metrics.jsonl")
REWIND_FILES = ("weights_rewind.safetensors", "optimizer_rewind.safetensors")


@dataclass(frozen=True)
class SweepResult:
    """Where the sweep's summary lives, each rewind's experiment (keyed by the rewind text) and the figure files."""

    sweep_dir: Path
    experiments: dict[str, ExperimentResult]
    summary_csv: Path
    figure_files: list[Path]


def rewind_sweep(
    config: ExperimentConfig,
    rewinds: list[str],
    *,
    root: str | Path = "runs",
    model: nn.Module | None = None,
    data: TaskData | None = None,
    device: str = "auto",
    **find_kwargs,
) -> SweepResult:
    """Run `config` once per rewind step in `rewinds` ('0it', '500it', '2ep'), training the dense network once.

    Extra keyword arguments go to `find_tickets` (workers, progress, on_finished, ...). Writes summary.csv and
    rewind_sweep.png/.svg (early-stop test accuracy of iterative_reset vs weights remaining, one line per
    rewind step, bars min..max over trials) into ``root/rewind_sweep_<data>_<model>_<digest>/``.
    """
    config = config.validate()
    check_variants(config)
    if not rewinds or len(set(rewinds)) != len(rewinds):
        raise ConfigError(f"rewinds {list(rewinds)} must be a non-empty list without repeats")
    if winning_ticket() not in config.variants:
        raise ConfigError(f"a rewind sweep needs the variant {winning_ticket()!r} in variants")
    effective, fingerprint = config, ""
    if model is not None:  # the same run directories find_tickets derives for custom models and data
        effective = effective.replace(**{"model.name": f"custom:{type(model).__name__}"})
        fingerprint += _model_fingerprint(model)
    if data is not None:
        effective = effective.replace(**{"data.name": "custom:tensors"})
        fingerprint += _data_fingerprint(data)
    torch_device = resolve_device(device)
    task = load_task(config.task)
    splits = (data if data is not None else load_task_data(task, config)).to(torch_device)
    per_epoch = task.steps_per_epoch(splits, config.train)
    runs = []  # (rewind text, config as given, run directory, rewind step)
    for text in rewinds:
        run_config = effective.replace(**{"prune.rewind": text})
        check_against_data(run_config, per_epoch, task.train_examples(splits), find_kwargs.get("plan_limit"))
        runs.append((text, config.replace(**{"prune.rewind": text}), run_directory(run_config, root, fingerprint),
                     parse_step(text, per_epoch)))

    host_text, host_config, host_dir, _ = runs[0]
    host_ctx = ExperimentContext(
        config=effective.replace(**{"prune.rewind": host_text}),
        run_dir=host_dir,
        data=splits,
        make_model=model_factory(effective, splits, model, task),
        device=torch_device,
        task=task,
    )
    with ExitStack() as locks:  # the sweep writes into every run's dense job: hold them all until it is done
        for _, _, run_dir, _ in runs:
            locks.enter_context(run_lock(run_dir))
        graph = job_graph(host_ctx)  # the same for every rewind step
        for _, _, run_dir, _ in runs:  # damaged dense jobs (and what depends on them) are recomputed, not shared
            repair_run(dataclasses.replace(host_ctx, run_dir=run_dir), graph)
        for trial in range(config.trials):
            _share_dense_job(host_ctx, trial, [(run_dir, step) for _, _, run_dir, step in runs[1:]])
        del host_ctx, splits  # find_tickets loads its own copy: never hold two

        experiments = {}
        for text, run_config, run_dir, _ in runs:
            result = find_tickets(run_config, root=root, model=model, data=data, device=device, **find_kwargs)
            if result.run_dir != run_dir:
                raise RuntimeError(f"rewind sweep expected run directory {run_dir}, find_tickets used {result.run_dir}")
            experiments[text] = result

    digest_source = effective.replace(**{"prune.rewind": "0it"}).hash() + fingerprint + "|".join(rewinds)
    name = host_dir.name.rsplit("_", 1)[0]
    sweep_dir = Path(root) / f"rewind_sweep_{name}_{hashlib.sha256(digest_source.encode()).hexdigest()[:12]}"
    summary = summarize_sweep({text: result.rows for text, result in experiments.items()})
    metric = task.metric(config)
    summary_csv = _write_summary(sweep_dir, summary)
    write_json(sweep_dir / "sweep.json", {
        "rewinds": list(rewinds),
        "run_dirs": {text: str(run_dir) for text, _, run_dir, _ in runs},
        "config": config.to_dict(),
    })
    figure_files = draw_sweep_figure(summary, sweep_dir / "rewind_sweep", title=_title(config, rewinds),
                                     metric=metric)
    return SweepResult(sweep_dir, experiments, summary_csv, figure_files)


def _share_dense_job(host_ctx: ExperimentContext, trial: int, siblings: list[tuple[Path, int]]) -> None:
    """Train the host's dense job (if needed) saving every sibling's rewind point, then copy it to the siblings.

    A sibling whose dense job is already done is left alone; one whose rewind point was not saved (the host's
    dense job finished before that sibling joined the sweep) trains its own dense job in find_tickets.
    """
    key = JobKey(trial, 0, DENSE)
    host_dir = key.directory(host_ctx.run_dir)
    pending = [(run_dir, step) for run_dir, step in siblings if not (key.directory(run_dir) / RESULT_FILE).exists()]
    if not (host_dir / RESULT_FILE).exists():
        shared = tuple((step, run_dir) for run_dir, step in pending)
        run_job(dataclasses.replace(host_ctx, shared_rewind_runs=shared), key)
    for run_dir, step in pending:
        target = key.directory(run_dir)
        if step > 0 and not all((target / name).exists() for name in REWIND_FILES):
            continue
        for name in SHARED_DENSE_FILES:
            atomic_write_bytes(target / name, (host_dir / name).read_bytes())
        # sealed again: the sibling's own rewind files differ from the host's
        write_json(target / RESULT_FILE, seal_result(target, read_sealed_result(host_dir / RESULT_FILE)))


def summarize_sweep(rows_by_rewind: dict[str, list[dict]], variant: str | None = None) -> list[dict]:
    """Per (rewind, level): mean weights remaining and mean/min/max of the early-stop test metric over trials
    (`test_metric_*`; for classification also named `test_accuracy_*`) of `variant` (None: the winning ticket)."""
    variant = variant or winning_ticket()
    summary = []
    for text, rows in rows_by_rewind.items():
        by_level: dict[int, list[dict]] = {}
        for row in rows:
            if row["variant"] == variant:
                by_level.setdefault(int(row["level"]), []).append(row)
        for level in sorted(by_level):
            values = [float(row["early_stop_test_metric"]) for row in by_level[level]]
            remaining = [float(row["weights_remaining_percent"]) for row in by_level[level]]
            metric = by_level[level][0].get("metric") or "accuracy"
            stats = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
            entry = {
                "rewind": text,
                "level": level,
                "weights_remaining_percent": sum(remaining) / len(remaining),
                "trials": len(values),
                "metric": metric,
                **{f"test_metric_{name}": value for name, value in stats.items()},
            }
            if metric == "accuracy":  # the column names sweeps had before tasks existed
                entry.update({f"test_accuracy_{name}": value for name, value in stats.items()})
            summary.append(entry)
    return summary


def _write_summary(sweep_dir: Path, summary: list[dict]) -> Path:
    columns = ["rewind", "level", "weights_remaining_percent", "trials", "metric", "test_metric_mean",
               "test_metric_min", "test_metric_max"]
    if any("test_accuracy_mean" in entry for entry in summary):
        columns += ["test_accuracy_mean", "test_accuracy_min", "test_accuracy_max"]
    return write_csv(sweep_dir / "summary.csv", columns, summary)


def draw_sweep_figure(
    summary: list[dict], path_stem: Path, title: str | None = None, metric: Metric | None = None
) -> list[Path]:
    """The early-stop test metric (accuracy in percent by default) vs weights remaining (log axis, decreasing),
    one line per rewind; writes .png and .svg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    figure = Figure(figsize=(6.4, 4.2), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    metric = metric or metric_named(summary[0]["metric"] if summary else "accuracy")
    scale = 100 if metric.percent else 1
    rewinds = list(dict.fromkeys(entry["rewind"] for entry in summary))
    for index, text in enumerate(rewinds):
        points = [entry for entry in summary if entry["rewind"] == text]
        x = [entry["weights_remaining_percent"] for entry in points]
        y = [scale * entry["test_metric_mean"] for entry in points]
        below = [scale * (entry["test_metric_mean"] - entry["test_metric_min"]) for entry in points]
        above = [scale * (entry["test_metric_max"] - entry["test_metric_mean"]) for entry in points]
        axes.errorbar(x, y, yerr=[below, above], label=f"rewind to {text}", marker="o", markersize=3.5,
                      capsize=2.5, linewidth=1.3, color=f"C{index % 10}")
    axes.set_xscale("log")
    ticks = sorted({round(entry["weights_remaining_percent"], 1) for entry in summary}, reverse=True)
    if len(ticks) > 8:
        ticks = [ticks[int(round(i))] for i in [j * (len(ticks) - 1) / 7 for j in range(8)]]
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([f"{tick:g}" for tick in ticks])
    if ticks:
        axes.set_xlim(max(ticks) * 1.15, min(ticks) / 1.15)  # decreasing: sparser networks to the right
    axes.set_xlabel("percent of weights remaining")
    axes.set_ylabel(f"{metric.axis_label()}, at early stop")
    if metric.log_scale:
        axes.set_yscale("log")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    files = []
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix)
        path = Path(f"{path_stem}.{suffix}")
        atomic_write_bytes(path, buffer.getvalue())
        files.append(path)
    return files


def _title(config: ExperimentConfig, rewinds: list[str]) -> str:
    trials = f"{config.trials} trial{'s' if config.trials != 1 else ''}"
    return f"{config.model.name} on {config.data.name}: rewinding to {', '.join(rewinds)} ({trials}, min/max bars)"
