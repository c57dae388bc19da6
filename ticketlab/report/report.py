"""Write the lottery-ticket report (figure + Markdown summary) of one run directory."""

from __future__ import annotations

import os
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.lottery.results_csv import check_against_jobs, read_results
from ticketlab.report.cost_figure import draw_cost_figure, has_training_cost
from ticketlab.report.curves import draw_learning_curves
from ticketlab.report.figures import draw_lottery_figure
from ticketlab.report.results import summarize_results, summary_metric
from ticketlab.report.table import summary_markdown
from ticketlab.store import atomic_write_bytes

RESULTS_FILE = "results.csv"
REPORT_DIR = "report"

NOTE = (
    "Test metrics are measured at the early-stopping iteration, i.e. the iteration of "
    "{early_stop}, and given as mean ± std over trials (population std). "
    "Error bars in the figure span the minimum and maximum over trials. "
    "Level 0 is the dense network; variants without their own level-0 run show the "
    "dense network's numbers."
)

COST_NOTE = (
    "Training cost counts every training that led to a result (an IMP level: the dense run and every round up to "
    "it); training FLOPs are 3x the forward FLOPs of the mask in force per example, times batch size and steps "
    "(Evci et al. 2020, Appendix H); evaluation and mask scoring are not counted."
)


def write_report(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Read ``run_dir/results.csv``; write the figure and ``summary.md`` to ``run_dir/report``.

    All files are written atomically. Returns ``{"png": ..., "svg": ...,
    "markdown": ...}`` and the other figures drawn (``cost_png``: the metric against training cost, for results
    that carry it).

    Raises:
        TicketlabError: ``results.csv`` is missing, unreadable, malformed or has no rows.
    """
    run = Path(run_dir)
    rows = read_run_results(run)
    summary = summarize_results(rows)
    out_dir = run / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run.resolve().name or str(run)
    png_path, svg_path = draw_lottery_figure(summary, out_dir / "lottery", title=name)
    markdown = (
        f"# Lottery ticket report: {name}\n\n"
        f"![lottery ticket figure](lottery.png)\n\n"
        f"{summary_markdown(summary)}\n"
        f"_{NOTE.format(early_stop=summary_metric(summary).early_stop)}_\n"
    )
    paths = {"png": png_path, "svg": svg_path}
    if has_training_cost(summary):
        paths["cost_png"], _ = draw_cost_figure(summary, out_dir / "training_cost", title=name)
        markdown += ("\n## Against training cost\n\n![metric against total training cost](training_cost.png)\n\n"
                     f"_{COST_NOTE}_\n")
    remaining = {int(entry["level"]): float(entry["weights_remaining_percent"]) for entry in summary}
    curves = draw_learning_curves(run, out_dir / "learning_curves", remaining, title=name)
    if curves:
        paths["curves_png"] = curves[0]
        markdown += "\n## Learning curves\n\n![validation metric against iteration](learning_curves.png)\n"
    markdown += _cheap_ticket_sections(run, out_dir, summary, name, paths)
    cost_table = out_dir / "cost.md"  # written by `ticketlab cost RUN_DIR` (ticketlab.export.run_cost)
    if cost_table.is_file():
        markdown += "\n## Cost per inference (`ticketlab cost`)\n\n" + cost_table.read_text(encoding="utf-8") + "\n"
    md_path = atomic_write_bytes(out_dir / "summary.md", markdown.encode("utf-8"))
    return {**paths, "markdown": md_path}


def _cheap_ticket_sections(run: Path, out_dir: Path, summary: list, name: str, paths: dict) -> str:
    """The pruning-at-init and early-bird figures (and the early-bird table), for runs that have them."""
    from ticketlab.report.cheap_tickets import (
        draw_at_init_figure,
        draw_early_bird_figure,
        has_at_init_variants,
        read_early_bird,
    )

    text = ""
    if has_at_init_variants(summary):
        paths["at_init_png"], _ = draw_at_init_figure(summary, out_dir / "at_init", title=name)
        text += "\n## Pruning at initialization\n\n![pruning at init against IMP and random](at_init.png)\n"
    detections, distances = read_early_bird(run)
    if distances:
        threshold = _early_bird_threshold(run)
        paths["early_bird_png"], _ = draw_early_bird_figure(detections, distances, out_dir / "early_bird",
                                                            threshold=threshold, title=name)
        text += "\n## Early-bird tickets\n\n![mask distance during dense training](early_bird.png)\n\n"
        text += "| trial | weights remaining % | detected | detection step | training saved % |\n"
        text += "| --- | --- | --- | --- | --- |\n"
        for row in detections:
            text += (f"| {row['trial']} | {float(row['weights_remaining_percent']):.3g} | {row['detected']} | "
                     f"{row['detection_step']} / {row['total_steps']} | {row['training_saved_percent']} |\n")
    return text


def _early_bird_threshold(run: Path) -> float | None:
    if not (run / "config.json").is_file():
        return None
    from ticketlab.lottery.integrity import read_run_config

    return read_run_config(run).prune.early_bird_threshold


# the recorded job files a report draws from (learning curves); result.json, whose numbers it shows, is always checked
REPORTED_FILES = ("metrics.jsonl",)


def read_run_results(run_dir: str | os.PathLike[str]) -> list[dict]:
    """``run_dir/results.csv``'s rows (see :func:`read_results`), checked against the run where there is one.

    In a run directory of `ticketlab find`, config.json is checked against its hash, every finished job's
    result.json against its digest and the files the report draws from (metrics.jsonl) against their recorded
    sha256, and the rows against those sealed results, so a report never shows an edited or damaged number. A
    damaged weight or mask file changes no number of the report: it is drawn, and report.html names the damage
    (`ticketlab verify` lists it). A directory holding only a results.csv is read as it is.

    Raises:
        TicketlabError: ``results.csv`` is missing, unreadable, malformed, has no rows or disagrees with the run;
            IntegrityError (a TicketlabError) naming the damaged run files.
    """
    from ticketlab.lottery.integrity import job_directories, job_key_of, read_finished_jobs, read_run_config

    run = Path(run_dir)
    csv_path = run / RESULTS_FILE
    if not csv_path.is_file():
        raise TicketlabError(f"results file not found: {csv_path}")
    config = read_run_config(run) if (run / "config.json").exists() else None
    marked_missing: list[set[str]] = []
    rows = read_results(csv_path, marked_missing)
    if not rows:
        raise TicketlabError(f"results file has no result rows: {csv_path}")
    if config is not None or job_directories(run):
        records = {job_key_of(path): record for path, record in read_finished_jobs(run, REPORTED_FILES).items()}
        check_against_jobs(csv_path, rows, records, config and config.variants, config and config.trials,
                           marked_missing=marked_missing)
    return rows
