"""The public entry points that run an experiment and then draw its report: `find_tickets`, `transfer_tickets` and
`rewind_sweep`.

They sit above both layers they join: the lottery layer trains and writes the CSVs without knowing the report exists
(it takes an `on_finished` callable), and the report layer draws from those CSVs without knowing how they were made.
`ticketlab.find_tickets` and the CLI are these functions. Torch and matplotlib load on the first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketlab.config import ExperimentConfig
    from ticketlab.lottery.experiment import ExperimentResult
    from ticketlab.lottery.sweep import SweepResult
    from ticketlab.lottery.transfer import TransferResult


def write_run_report(run_dir: Path) -> dict[str, Path]:
    """The report of a finished run directory: figures, tables and report.html; returns the files by kind."""
    from ticketlab.report import write_report
    from ticketlab.report.html_report import write_html_report

    files = write_report(run_dir)
    files["html"] = write_html_report(run_dir)
    return files


def write_transfer_report(transfer_dir: Path, rows: list[dict]) -> list[Path]:
    """The transfer figure (transfer.png/.svg) of a transfer directory's rows; returns its files."""
    from ticketlab.lottery.transfer_results import transfer_metric
    from ticketlab.report.transfer import write_transfer_figure

    return write_transfer_figure(rows, transfer_dir / "transfer", metric=transfer_metric(rows))


def find_tickets(config: ExperimentConfig, *, report: bool = True, **options) -> ExperimentResult:
    """Run (or resume) a lottery-ticket experiment, write results.csv and, with `report`, the report (figures,
    tables, report.html) into the run directory.

    `options` are those of `ticketlab.lottery.experiment.find_tickets` (root, model, data, workers, population,
    device, progress, checkpoint_interval_s, plan_limit, executor, ray_address, ray_cpus_per_task).
    """
    from ticketlab.lottery import experiment

    return experiment.find_tickets(config, on_finished=write_run_report if report else None, **options)


def transfer_tickets(sources: list[str | Path], target: ExperimentConfig, *, report: bool = True,
                     **options) -> TransferResult:
    """Train each source run's tickets on `target` with its controls, write transfer.csv and, with `report`, the
    transfer figure. `options` are those of `ticketlab.lottery.transfer.transfer_tickets` (levels, root,
    output_layer, workers, population, device, progress, checkpoint_interval_s and the executor's)."""
    from ticketlab.lottery import transfer

    return transfer.transfer_tickets(sources, target, on_finished=write_transfer_report if report else None,
                                     **options)


def rewind_sweep(config: ExperimentConfig, rewinds: list[str], *, report: bool = True, **options) -> SweepResult:
    """Run `config` once per rewind step (`ticketlab.lottery.sweep.rewind_sweep`, which takes `options`), each
    experiment with its report when `report`; the sweep's own figure is always drawn."""
    from ticketlab.lottery import sweep

    return sweep.rewind_sweep(config, rewinds, on_finished=write_run_report if report else None, **options)
