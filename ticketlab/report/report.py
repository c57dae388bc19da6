"""Write the lottery-ticket report (figure + Markdown summary) of one run directory."""

from __future__ import annotations

import os
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.report.figures import draw_lottery_figure
from ticketlab.report.results import atomic_write_bytes, read_results, summarize_results
from ticketlab.report.table import summary_markdown

RESULTS_FILE = "results.csv"
REPORT_DIR = "report"

NOTE = (
    "Accuracies are measured at the early-stopping iteration, i.e. the iteration of "
    "minimum validation loss, and given as mean ± std over trials (population std). "
    "Error bars in the figure span the minimum and maximum over trials. "
    "Level 0 is the dense network; variants without their own level-0 run show the "
    "dense network's numbers."
)


def write_report(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Read ``run_dir/results.csv``; write the figure and ``summary.md`` to ``run_dir/report``.

    All files are written atomically. Returns ``{"png": ..., "svg": ...,
    "markdown": ...}``.

    Raises:
        TicketlabError: ``results.csv`` is missing, unreadable, malformed or has no rows.
    """
    run = Path(run_dir)
    csv_path = run / RESULTS_FILE
    if not csv_path.is_file():
        raise TicketlabError(f"results file not found: {csv_path}")
    rows = read_results(csv_path)
    if not rows:
        raise TicketlabError(f"results file has no result rows: {csv_path}")
    summary = summarize_results(rows)
    out_dir = run / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run.resolve().name or str(run)
    png_path, svg_path = draw_lottery_figure(summary, out_dir / "lottery", title=name)
    markdown = (
        f"# Lottery ticket report: {name}\n\n"
        f"![lottery ticket figure](lottery.png)\n\n"
        f"{summary_markdown(summary)}\n"
        f"_{NOTE}_\n"
    )
    md_path = atomic_write_bytes(out_dir / "summary.md", markdown.encode("utf-8"))
    return {"png": png_path, "svg": svg_path, "markdown": md_path}
