"""Run-directory integrity: sealed result.json files, their checks and repair (the one-writer lock:
`ticketlab.lottery.run_lock`).

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

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from ticketlab.errors import IntegrityError, TicketlabError
from ticketlab.lottery.results_csv import check_against_jobs, read_results
from ticketlab.lottery.variants import VARIANTS
from ticketlab.store import check_tensors_payload, file_sha256, read_json, set_aside

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
MASK_FILE = "mask.safetensors"
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


def finished_job_problems(job_dir: Path, files: Collection[str] | None = None) -> list[str]:
    """What is wrong with a finished job's directory (empty when its result and artifacts verify); with `files`,
    only those of its recorded artifacts are checked (result.json always is)."""
    try:
        record = read_sealed_result(job_dir / RESULT_FILE)
    except IntegrityError as error:
        return [f"{RESULT_FILE}: {_reason(error, job_dir / RESULT_FILE)}"]
    problems = []
    for name, recorded in sorted(record.get(ARTIFACTS_FIELD, {}).items()):
        if files is not None and name not in files:
            continue
        path = job_dir / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif file_sha256(path) != recorded:
            unreadable = [problem for problem in (_tensor_file_problems(path) if name.endswith(".safetensors") else [])
                          if "not a readable" in problem]  # garbage says so; changed bytes that parse, as below
            problems.extend(unreadable or [f"{name}: differs from the sha256 recorded in {RESULT_FILE}"])
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
    """job -> the jobs that read its outputs: its children in the graph, plus the jobs whose mask reads a stored
    mask of the same level (`Variant.mask_sources`: e.g. the random-pruning control copies the per-layer counts
    of that level's ticket mask, not one of its graph inputs)."""
    readers: dict = {key: set() for key in graph}
    for key, inputs in graph.items():
        mask_sources = VARIANTS.get(key.variant).mask_sources(key) if key.variant in VARIANTS else ()
        for source in (*inputs, *mask_sources):
            readers.setdefault(source, set()).add(key)
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
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() and run_dir.is_dir() and job_directories(run_dir):
        config, damage = None, [Damage(run_dir / CONFIG_FILE, "missing (the directory holds job directories)")]
    else:
        damage = []
        config, problem = _stored_config(_config_path(run_dir))
        if problem:
            damage.append(Damage(run_dir / CONFIG_FILE, problem))
    plan_path = run_dir / "population.json"
    if plan_path.exists():
        try:
            size = read_json(plan_path)["population"]
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"population {size!r} is not a positive integer")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            damage.append(Damage(plan_path, f"not a readable population record ({error})"))
    records = {}
    for job_dir in job_directories(run_dir):
        finished = (job_dir / RESULT_FILE).exists()
        record, problems = _checked_job(job_dir) if finished else (None, unfinished_job_problems(job_dir))
        if finished:
            records[job_key_of(job_dir)] = record
        for problem in problems:
            name, _, text = problem.partition(": ")
            damage.append(Damage(job_dir / name, text))
    results_problem = _results_problem(run_dir, records, config)
    if results_problem:
        damage.append(Damage(run_dir / "results.csv", results_problem))
    return damage


def _results_problem(run_dir: Path, records: dict, config) -> str | None:
    """What is wrong with results.csv against the sealed results (None when it agrees or is absent)."""
    path = run_dir / "results.csv"
    if not path.exists():
        return None
    try:
        check_against_jobs(path, read_results(path), records, config and config.variants, config and config.trials)
    except TicketlabError as error:
        return _reason(error, path).split("; rerun")[0]
    return None


def job_key_of(job_dir: Path) -> tuple[int, int, str]:
    """(trial, level, variant) of a job directory `trial_T/level_LL/VARIANT`."""
    return int(job_dir.parts[-3].split("_")[1]), int(job_dir.parts[-2].split("_")[1]), job_dir.name


def job_directories(run_dir: Path) -> list[Path]:
    """The job directories of a run (`trial_T/level_LL/VARIANT`), in path order."""
    return sorted(path for path in run_dir.glob("trial_*/level_*/*") if path.is_dir() and "." not in path.name
                  and re.fullmatch(r"trial_\d+", path.parts[-3]) and re.fullmatch(r"level_\d+", path.parts[-2]))


# --- checked reading: every command that reads a run directory -----------------------------------

CONFIG_FILE = "config.json"
REPAIR_HINT = "`ticketlab verify RUN_DIR` lists the damage; the run's `ticketlab find` command recomputes it"
MAX_NAMED = 4  # damaged files named in one error line


def read_run_config(run_dir: str | Path):
    """The ExperimentConfig of a run directory after checking its config.json: UTF-8 JSON holding a valid config
    that hashes to the recorded hash (as `find` and `verify` check it). TicketlabError if `run_dir` is not a run
    directory, IntegrityError naming config.json if that file is damaged or edited."""
    path = _config_path(Path(run_dir))
    config, problem = _stored_config(path)
    if problem:
        raise IntegrityError(f"{path}: {problem}; {REPAIR_HINT}")
    return config


def read_finished_job(job_dir: str | Path) -> dict:
    """A finished job's sealed result.json after checking it and every file it records (sha256 of each file,
    tensor hashes of the safetensors files); IntegrityError naming the damaged files in one line."""
    job_dir = Path(job_dir)
    record, problems = _checked_job(job_dir)
    if problems:
        raise IntegrityError(_damage_line([f"{job_dir / problem}" for problem in problems]))
    return record


def read_finished_jobs(run_dir: str | Path, files: Collection[str] | None = None) -> dict[Path, dict]:
    """job directory -> sealed record of every finished job of a run (path order), each checked as
    `read_finished_job` checks it (with `files`: only those recorded artifacts, for a reader that uses no
    other); one IntegrityError naming every damaged file if any is damaged."""
    records, damaged = {}, []
    for job_dir in job_directories(Path(run_dir)):
        if not (job_dir / RESULT_FILE).exists():
            continue
        record, problems = _checked_job(job_dir, files)
        damaged += [f"{job_dir / problem}" for problem in problems]
        records[job_dir] = record
    if damaged:
        raise IntegrityError(_damage_line(damaged))
    return records


def refuse_run_artifact(path: str | Path, run_dir: str | Path | None = None, flag: str = "--output") -> None:
    """TicketlabError when writing `path` would replace a file of a run directory (`run_dir`, or any directory
    above `path` holding a run's config.json): a command's output never overwrites what a run has recorded."""
    target = Path(path).absolute()
    if not (target.exists() or target.is_symlink()):
        return
    target = target.resolve()
    folders = ([Path(run_dir).resolve()] if run_dir is not None else []) + list(target.parents)
    for run in folders:
        if target.is_relative_to(run) and _holds_run_config(run):
            raise TicketlabError(f"{flag} {str(path)!r} is a file of run directory {str(run)!r}; a run's own files "
                                 "are never overwritten: choose a path outside it or a new file name")


def _holds_run_config(folder: Path) -> bool:
    try:
        stored = read_json(folder / CONFIG_FILE)
    except (OSError, ValueError, RecursionError):
        return (folder / CONFIG_FILE).exists()  # a damaged run config still marks a run directory
    return isinstance(stored, dict) and "config" in stored and "hash" in stored


def _config_path(run_dir: Path) -> Path:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        reason = ("it does not exist" if not run_dir.exists() else "not a directory" if not run_dir.is_dir()
                  else f"no {CONFIG_FILE}")
        raise TicketlabError(f"{str(run_dir)!r} is not a run directory ({reason})")
    return path


def _stored_config(path: Path):
    """(config, None) for a config.json that parses and hashes to its recorded hash; (None, problem) otherwise."""
    from ticketlab.config import config_from_dict

    try:
        stored = read_json(path)
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise ValueError("no config object")
        config = config_from_dict(stored["config"])
    except UnicodeDecodeError:
        return None, "not a readable run config: it is not UTF-8 text"
    except (OSError, ValueError, KeyError, TypeError, RecursionError, TicketlabError) as error:
        return None, f"not a readable run config ({' '.join(str(error).split())})"
    if config.hash() != stored.get("hash"):
        return None, "its config does not hash to its recorded hash (edited or damaged)"
    return config, None


def _checked_job(job_dir: Path, files: Collection[str] | None = None) -> tuple[dict | None, list[str]]:
    """(sealed record, problems) of a finished job; the record is None when result.json itself is damaged."""
    problems = finished_job_problems(job_dir, files)
    if problems and problems[0].startswith(f"{RESULT_FILE}:"):
        return None, problems
    return read_sealed_result(job_dir / RESULT_FILE), problems


def _damage_line(problems: list[str]) -> str:
    """One line naming the damaged files (the first MAX_NAMED, 'path: what is wrong') and what to do."""
    more = f" and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED else ""
    return f"damaged run files: {'; '.join(problems[:MAX_NAMED])}{more}; {REPAIR_HINT}"
