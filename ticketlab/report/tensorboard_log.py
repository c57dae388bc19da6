"""`find --log tensorboard`: each finished job's metrics.jsonl as TensorBoard event files.

Events go to RUN/tensorboard/<variant>/trial-<t>/level-<l>, so TensorBoard's run selector groups them by variant,
trial and level. Every numeric column of metrics.jsonl becomes a scalar (train_loss -> train/loss, val_loss ->
validation/loss, val_accuracy -> validation/accuracy, ...), plus train/learning_rate (the rate of the update that
reached the step, from the config's schedule; left out when the schedule needs data the run does not record) and
sparsity/weights_remaining_percent. Conversion happens after a job has finished (its metrics.jsonl is then
complete); a job recomputed later (damaged files) is converted again. Needs the `tensorboard` package
(`pip install 'ticketlab[tensorboard]'`) and torch's SummaryWriter; nothing runs or loads without --log.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ticketlab.errors import ConfigError
from ticketlab.store import file_sha256, read_json, read_jsonl, write_json

TENSORBOARD_DIR = "tensorboard"
SOURCE_FILE = "source.json"  # the sha256 of the metrics.jsonl an event directory was written from
LOG_CHOICES = ("tensorboard",)
_PREFIXES = {"train_": "train/", "val_": "validation/", "test_": "test/"}


def check_tensorboard() -> None:
    """ConfigError naming the extra to install when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("--log tensorboard needs the tensorboard package: pip install 'ticketlab[tensorboard]'"
                          ) from None


def events_directory(run_dir: Path, variant: str, trial: int, level: int) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR / variant / f"trial-{trial}" / f"level-{level}"


def scalar_tag(column: str) -> str:
    """metrics.jsonl column -> TensorBoard tag: train_loss -> train/loss, val_accuracy -> validation/accuracy."""
    for prefix, group in _PREFIXES.items():
        if column.startswith(prefix):
            return group + column.removeprefix(prefix)
    return f"metrics/{column}"


def write_run_events(run_dir: str | Path) -> list[Path]:
    """Write the event files of every finished job of `run_dir` not converted yet; returns the directories
    written. Jobs still training are left for a later call."""
    from ticketlab.lottery.integrity import RESULT_FILE, job_directories

    run_dir = Path(run_dir)
    schedule = _Schedule(run_dir)
    written = []
    for job_dir in job_directories(run_dir):
        metrics_path = job_dir / "metrics.jsonl"
        if not (job_dir / RESULT_FILE).is_file() or not metrics_path.is_file():
            continue
        try:
            result = read_json(job_dir / RESULT_FILE)
            trial, level = int(result["trial"]), int(result["level"])
        except (OSError, ValueError, KeyError, TypeError):  # being rewritten or damaged: `find` repairs it
            continue
        target = events_directory(run_dir, job_dir.name, trial, level)
        digest = file_sha256(metrics_path)
        if _converted_from(target) == digest:
            continue
        _write_job_events(target, read_jsonl(metrics_path), result, schedule)
        write_json(target / SOURCE_FILE, {"metrics_sha256": digest})
        written.append(target)
    return written


def _write_job_events(target: Path, rows: list[dict], result: dict, schedule: "_Schedule") -> None:
    from torch.utils.tensorboard import SummaryWriter

    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("events.out.tfevents.*"):  # a recomputed job replaces its earlier events
        old.unlink()
    remaining = result.get("weights_remaining_percent")
    total = result.get("final_iteration")
    writer = SummaryWriter(log_dir=str(target))
    try:
        for row in rows:
            step = row.get("step")
            if not isinstance(step, int):
                continue
            for column, value in row.items():
                if column != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(scalar_tag(column), float(value), step)
            rate = schedule.rate(max(step - 1, 0), total)
            if rate is not None:
                writer.add_scalar("train/learning_rate", rate, step)
            if isinstance(remaining, (int, float)):
                writer.add_scalar("sparsity/weights_remaining_percent", float(remaining), step)
    finally:
        writer.close()


def _converted_from(target: Path) -> str | None:
    try:
        return read_json(target / SOURCE_FILE).get("metrics_sha256")
    except (OSError, ValueError, AttributeError):
        return None


class _Schedule:
    """The run's learning-rate schedule, as a pure function of the step (ticketlab.training.optim). Epoch-valued
    steps need the iterations per epoch: the dense job's last step over the epochs train.steps names."""

    def __init__(self, run_dir: Path):
        from ticketlab.config import config_from_dict, step_count

        self.train, self.per_epoch = None, None
        try:
            config = config_from_dict(read_json(run_dir / "config.json")["config"])
        except Exception:  # noqa: BLE001 - a damaged config: no learning rate, the rest still converts
            return
        self.train = config.train
        count, unit = step_count(config.train.steps)
        dense = sorted(run_dir.glob("trial_*/level_00/dense/result.json"))
        if unit != "it" and dense and count:
            try:
                self.per_epoch = int(read_json(dense[0])["final_iteration"]) // count
            except (OSError, ValueError, KeyError, TypeError):
                pass

    def rate(self, step: int, total_steps) -> float | None:
        if self.train is None or not isinstance(total_steps, int):
            return None
        from ticketlab.training.optim import learning_rate_at

        try:
            return float(learning_rate_at(step, self.train, total_steps, self.per_epoch))
        except (ConfigError, TypeError, ValueError, ZeroDivisionError):
            return None


class EventWriterThread:
    """Converts finished jobs every `interval_s` seconds while a run trains, and everything left on `stop()`."""

    def __init__(self, run_dir: Path, interval_s: float = 15.0):
        self.run_dir, self.interval_s = Path(run_dir), interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ticketlab-tensorboard", daemon=True)

    def start(self) -> "EventWriterThread":
        self._thread.start()
        return self

    def stop(self) -> list[Path]:
        self._stop.set()
        self._thread.join()
        return write_run_events(self.run_dir) if self.run_dir.is_dir() else []

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.run_dir.is_dir():
                try:
                    write_run_events(self.run_dir)
                except (OSError, ValueError):  # a file replaced under us: the next pass or stop() retries
                    pass
