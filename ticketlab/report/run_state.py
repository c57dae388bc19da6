"""How far a run directory has got: jobs finished and planned, levels, damage, size. Torch-free (`ticketlab runs`).

Planned jobs come from the plan estimate (`ticketlab.lottery.estimate.plan_estimate`), finished ones from the
job directories holding a result.json; damage from `ticketlab.lottery.integrity.verify_run`, which hashes every
artifact (skip it with `verify=False` where speed matters more).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.store import read_json

FINISHED, PARTIAL, DAMAGED, UNKNOWN = "finished", "partial", "damaged", "unreadable"


@dataclass(frozen=True)
class RunState:
    """A run directory's progress. `damage` is None when it was not verified."""

    run_dir: Path
    config: dict | None  # config.json's "config" (None when config.json is unreadable)
    jobs_planned: int
    jobs_done: int
    levels_planned: int
    levels_done: int  # the deepest level with a finished job
    damage: list | None
    size_bytes: int
    last_change: float  # newest file modification time, seconds since the epoch

    @property
    def state(self) -> str:
        if self.config is None:
            return UNKNOWN
        if self.damage:
            return DAMAGED
        return FINISHED if self.jobs_done >= self.jobs_planned else PARTIAL

    @property
    def jobs_left(self) -> int:
        return max(self.jobs_planned - self.jobs_done, 0)

    @property
    def task(self) -> str:
        return str((self.config or {}).get("task", "?"))

    @property
    def trials(self) -> int:
        return int((self.config or {}).get("trials", 0) or 0)

    @property
    def variants(self) -> list[str]:
        return list((self.config or {}).get("variants", []))


def is_run_directory(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


def read_run_state(run_dir: str | Path, verify: bool = True) -> RunState:
    """The state of a run directory; TicketlabError if it is not one (no config.json)."""
    from ticketlab.lottery.integrity import RESULT_FILE, job_directories, verify_run

    run_dir = Path(run_dir)
    if not is_run_directory(run_dir):
        raise TicketlabError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    config = stored_config(run_dir)
    finished = [path for path in job_directories(run_dir) if (path / RESULT_FILE).is_file()]
    levels_done = max((_level_of(path) for path in finished), default=0)
    jobs_planned, levels_planned = _plan(config, run_dir) if config is not None else (0, 0)
    damage = verify_run(run_dir) if verify else None
    size, newest = _size_and_newest(run_dir)
    return RunState(run_dir, config, jobs_planned, len(finished), levels_planned, levels_done, damage, size, newest)


def stored_config(run_dir: Path) -> dict | None:
    """The config dict a run directory records (None when config.json cannot be read)."""
    try:
        config = read_json(Path(run_dir) / "config.json")["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return config if isinstance(config, dict) else None


def _plan(config: dict, run_dir: Path) -> tuple[int, int]:
    """(jobs, levels) planned. A target-percent run plans at most the rounds its slowest rate needs; once every
    trial has reached the target, the level that reached it is the plan."""
    from ticketlab.config import config_from_dict
    from ticketlab.lottery.estimate import plan_estimate

    try:
        experiment = config_from_dict(config)
    except (TicketlabError, ValueError, TypeError, KeyError):
        return 0, 0
    target = experiment.prune.target_remaining_percent
    if target is not None:
        reached = _level_reaching(run_dir / "results.csv", target, experiment.trials)
        if reached is not None:
            experiment = experiment.replace(**{"prune.target_remaining_percent": None, "prune.levels": reached})
    plan = plan_estimate(experiment)
    return plan.jobs, plan.levels


def _level_reaching(results_csv: Path, target: float, trials: int) -> int | None:
    """The level at which every trial's ticket has at most `target` percent of weights left (None: not yet)."""
    try:
        with open(results_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return None
    first: dict[int, int] = {}
    for row in rows:
        try:
            trial, level, percent = int(row["trial"]), int(row["level"]), float(row["weights_remaining_percent"])
        except (KeyError, TypeError, ValueError):
            continue
        if level > 0 and percent <= target:
            first[trial] = min(first.get(trial, level), level)
    return max(first.values()) if len(first) >= trials else None


def _level_of(job_dir: Path) -> int:
    try:
        return int(job_dir.parent.name.removeprefix("level_"))
    except ValueError:
        return 0


def _size_and_newest(run_dir: Path) -> tuple[int, float]:
    size, newest = 0, None
    for folder, _, files in os.walk(run_dir):
        for name in files:
            try:
                info = os.stat(os.path.join(folder, name))
            except OSError:  # removed while walking
                continue
            size += info.st_size
            newest = info.st_mtime if newest is None else max(newest, info.st_mtime)
    return size, os.stat(run_dir).st_mtime if newest is None else newest


def format_size(size_bytes: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def as_dict(state: RunState) -> dict:
    """A JSON-ready view (for `ticketlab runs --json`)."""
    record = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)
              if field.name not in ("config", "damage")}
    record.update(run_dir=str(state.run_dir), state=state.state,
                  last_change_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.last_change)),
                  jobs_left=state.jobs_left, task=state.task,
                  trials=state.trials, variants=state.variants,
                  damage=None if state.damage is None else [str(item) for item in state.damage])
    return record
