"""Run-directory integrity: sealed result.json files, their checks and repair, and the one-writer lock.

A finished job's result.json records the sha256 of every artifact the job wrote (`artifacts`) and, under
`digest`, the sha256 of the canonical JSON of the rest of the record, so a flipped bit in a weight file and an
edited number are both detected. Every safetensors file also carries the hash of its own tensors in its
metadata (`ticketlab.store`), which covers files read back before their job has finished (masks, checkpoints).

A finished job that fails its checks is set aside (its result.json renamed `result.corrupt-<timestamp>.json`,
with a warning) and recomputed, and so is every job that read its outputs, transitively: their masks and
starting points may have been derived from the damaged files.

Torch-free: `ticketlab verify` imports this module without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ticketlab.errors import IntegrityError, RunLockedError, TicketlabError
from ticketlab.store import check_tensors_payload, file_sha256, read_json, set_aside

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
MASK_FILE = "mask.safetensors"
LOCK_FILE = ".lock"
DIGEST_FIELD = "digest"  # sha256 of the canonical JSON of the record without this field
ARTIFACTS_FIELD = "artifacts"  # file name -> sha256 of the file's bytes
# What a job writes, in the order it writes them (result.json comes last and seals them).
JOB_ARTIFACTS = (
    "mask.safetensors",
    "weights_init.safetensors",
    "weights_rewind.safetensors",
    "optimizer_rewind.safetensors",
    "weights_final.safetensors",
    "metrics.jsonl",
)
# Files that make a job's next run reuse earlier work; setting them aside makes it start from scratch.
REUSED_FILES = (RESULT_FILE, MASK_FILE, CHECKPOINT_FILE)


# --- sealed results --------------------------------------------------------------------------------


def record_digest(record: dict) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of `record` without its digest field."""
    body = {key: value for key, value in record.items() if key != DIGEST_FIELD}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_result(job_dir: Path, record: dict) -> dict:
    """`record` with the sha256 of each artifact present in `job_dir` and a digest over the whole; any earlier
    seal (a record copied from another directory) is replaced."""
    sealed = {key: value for key, value in record.items() if key not in (DIGEST_FIELD, ARTIFACTS_FIELD)}
    sealed[ARTIFACTS_FIELD] = {name: file_sha256(job_dir / name) for name in JOB_ARTIFACTS if (job_dir / name).exists()}
    sealed[DIGEST_FIELD] = record_digest(sealed)
    return sealed


def read_sealed_result(path: Path) -> dict:
    """A result.json whose digest matches its numbers; IntegrityError if it does not parse or match. Records
    written before results were sealed (no digest field) are returned as they are."""
    try:
        record = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IntegrityError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(record, dict):
        raise IntegrityError(f"{path}: not a JSON object")
    if DIGEST_FIELD in record and record[DIGEST_FIELD] != record_digest(record):
        raise IntegrityError(f"{path}: its numbers differ from its recorded digest (edited or damaged)")
    return record


def finished_job_problems(job_dir: Path) -> list[str]:
    """What is wrong with a finished job's directory (empty when its result and artifacts verify)."""
    try:
        record = read_sealed_result(job_dir / RESULT_FILE)
    except IntegrityError as error:
        return [f"{RESULT_FILE}: {_reason(error, job_dir / RESULT_FILE)}"]
    problems = []
    for name, recorded in sorted(record.get(ARTIFACTS_FIELD, {}).items()):
        path = job_dir / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif file_sha256(path) != recorded:
            problems.append(f"{name}: differs from the sha256 recorded in {RESULT_FILE}")
        elif name.endswith(".safetensors"):
            problems.extend(_tensor_file_problems(path))
    return problems


def unfinished_job_problems(job_dir: Path) -> list[str]:
    """What is wrong with the files an unfinished job has written so far (its mask, starting weights, checkpoint)."""
    problems = []
    for name in (MASK_FILE, "weights_init.safetensors", "weights_rewind.safetensors", "optimizer_rewind.safetensors",
                 CHECKPOINT_FILE):
        if (job_dir / name).exists():
            problems.extend(_tensor_file_problems(job_dir / name))
    return problems


def _tensor_file_problems(path: Path) -> list[str]:
    try:
        check_tensors_payload(path.read_bytes(), path)
    except IntegrityError as error:
        return [f"{path.name}: {_reason(error, path)}"]
    return []


def _reason(error: IntegrityError, path: Path) -> str:
    """The error's text without the path it starts with."""
    return str(error).removeprefix(f"{path}: ")


# --- repair before a run ---------------------------------------------------------------------------


def repair_run(ctx, graph: dict) -> list:
    """Verify every finished job of `graph` (once, in graph order) and set aside each damaged one together with
    every job that read its outputs, transitively, so the run recomputes them; returns the damaged jobs.

    `ctx` is the run's ExperimentContext, `graph` its job graph (JobKey -> input JobKeys). One warning line on
    stderr per damaged job.
    """
    readers = _readers(graph)
    damaged = []
    for key in graph:
        job_dir = key.directory(ctx.run_dir)
        if not (job_dir / RESULT_FILE).exists():
            continue
        problems = finished_job_problems(job_dir)
        if not problems:
            continue
        damaged.append(key)
        dependants = _closure(readers, key)
        _set_aside_job(job_dir, failed=[problem.split(":", 1)[0] for problem in problems])
        for dependant in dependants:
            _set_aside_job(dependant.directory(ctx.run_dir), failed=REUSED_FILES)
        tail = f" and the {len(dependants)} jobs that depend on it" if dependants else ""
        print(f"ticketlab: warning: {key.label()} is damaged ({'; '.join(problems)}); set aside, recomputing it"
              f"{tail}", file=sys.stderr)
    return damaged


def _readers(graph: dict) -> dict:
    """job -> the jobs that read its outputs: its children in the graph, plus the random-pruning control of a
    level, which copies the per-layer counts of that level's ticket mask (not one of its graph inputs)."""
    readers: dict = {key: set() for key in graph}
    for key, inputs in graph.items():
        for source in inputs:
            readers.setdefault(source, set()).add(key)
        if key.variant == "random_pruning":
            readers.setdefault(dataclasses.replace(key, variant="iterative_reset"), set()).add(key)
    return readers


def _closure(readers: dict, key) -> list:
    seen, stack = set(), [key]
    while stack:
        for reader in readers.get(stack.pop(), ()):
            if reader not in seen:
                seen.add(reader)
                stack.append(reader)
    return sorted(seen)


def _set_aside_job(job_dir: Path, failed) -> None:
    """Rename the job's result.json, and each named file that failed or would be reused, out of the way."""
    for name in dict.fromkeys((RESULT_FILE, *failed)):
        path = job_dir / name
        if path.exists():
            set_aside(path)


# --- ticketlab verify ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One problem found by `verify_run`: the file (or job directory) and what is wrong with it."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def verify_run(run_dir: str | Path) -> list[Damage]:
    """Check a run directory without changing it: config.json, population.json, and every job directory
    (a finished job's result digest and artifact hashes; an unfinished job's mask, weights and checkpoint).
    Returns the problems found, empty when the run is clean. TicketlabError if `run_dir` is not a run."""
    from ticketlab.config import config_from_dict

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise TicketlabError(f"{str(run_dir)!r} is not a run directory (no config.json)")
    damage = []
    try:
        stored = read_json(config_path)
        if config_from_dict(stored["config"]).hash() != stored["hash"]:
            damage.append(Damage(config_path, "its config does not hash to its recorded hash"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, TicketlabError) as error:
        damage.append(Damage(config_path, f"not a readable run config ({error})"))
    plan_path = run_dir / "population.json"
    if plan_path.exists():
        try:
            size = read_json(plan_path)["population"]
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"population {size!r} is not a positive integer")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            damage.append(Damage(plan_path, f"not a readable population record ({error})"))
    for job_dir in job_directories(run_dir):
        finished = (job_dir / RESULT_FILE).exists()
        problems = finished_job_problems(job_dir) if finished else unfinished_job_problems(job_dir)
        for problem in problems:
            name, _, text = problem.partition(": ")
            damage.append(Damage(job_dir / name, text))
    return damage


def job_directories(run_dir: Path) -> list[Path]:
    """The job directories of a run (`trial_T/level_LL/VARIANT`), in path order."""
    return sorted(path for path in run_dir.glob("trial_*/level_*/*") if path.is_dir() and "." not in path.name)


# --- one writer per run directory ------------------------------------------------------------------

_HELD: dict[str, int] = {}  # run directories whose lock this process holds -> nesting depth


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's lock (an exclusive flock on RUN_DIR/.lock, which records the holder's PID) for
    the block; RunLockedError at once if another process holds it. Nested holds in one process share the lock
    (the rewind sweep holds its runs while `find_tickets` trains each); worker processes take none."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    import fcntl  # POSIX; the lock is advisory and released by the kernel when the holder dies

    descriptor = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(descriptor, 64).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise RunLockedError(
            f"run directory {run_dir} is in use by process {holder}; wait for it to finish or stop it, then run "
            "the command again (it resumes where that process stopped)") from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
