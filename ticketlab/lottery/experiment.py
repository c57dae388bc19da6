"""`find_tickets`: run a whole lottery experiment (all trials, levels and variants), resumably."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError, IntegrityError, TicketlabError
from ticketlab.lottery import provenance
from ticketlab.lottery.estimate import PlanLimit, check_against_data
from ticketlab.lottery.workers import model_factory
from ticketlab.lottery.executors import Execution, ExecutorChoice, RunPlan, check_choice, choose_executor
from ticketlab.lottery.executors.base import LOCAL
from ticketlab.lottery.integrity import repair_run
from ticketlab.lottery.run_lock import LOCK_FILE, run_lock
from ticketlab.lottery.planner import settle_run_settings
from ticketlab.lottery.progress import NoBar
from ticketlab.lottery.progress import progress_bar
from ticketlab.lottery.context import ExperimentContext, is_done, read_result
from ticketlab.lottery.jobs import check_task_supports, job_graph, job_steps, write_variant_summaries
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.results_csv import result_row, results_csv_bytes
from ticketlab.lottery.training_cost import training_costs
from ticketlab.lottery.variants import check_variants
from ticketlab.tasks import load_task
from ticketlab.tasks.base import TaskData, load_task_data
from ticketlab.store import atomic_write_bytes, read_json_record, write_json


@dataclass(frozen=True)
class ExperimentResult:
    """Where a finished experiment lives and what it measured (rows as in results.csv)."""

    run_dir: Path
    results_csv: Path
    rows: list[dict]
    report_files: dict[str, Path]


def run_directory(config: ExperimentConfig, root: str | Path = "runs", fingerprint: str = "") -> Path:
    """The run directory of a config: `root/<data>_<model>_<hash>` (the hash also covers custom model/data)."""
    name = config.run_name()
    if fingerprint:
        digest = hashlib.sha256((config.hash() + fingerprint).encode()).hexdigest()[:16]
        name = name.rsplit("_", 1)[0] + "_" + digest
    return Path(root) / name


def find_tickets(
    config: ExperimentConfig,
    *,
    root: str | Path = "runs",
    model: nn.Module | None = None,
    data: TaskData | None = None,
    workers: int = 1,
    population: int | None = None,
    device: str = "auto",
    progress: bool = True,
    on_finished: Callable[[Path], dict[str, Path]] | None = None,
    checkpoint_interval_s: float = 30.0,
    plan_limit: PlanLimit | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_cpus_per_task: int = 1,
) -> ExperimentResult:
    """Run (or resume) a lottery-ticket experiment and write results.csv (`ticketlab.find_tickets` adds the report).

    `model` (any nn.Module; its Linear/Conv/Embedding weights are pruned) and `data` (see
    `ticketlab.data.make_splits`) replace the config's built-in model and dataset. Jobs that are ready
    together train as one stacked population (`population`: None sizes it from the memory budget, 1 trains one
    job at a time, the reference path). With `workers` > 1 on the CPU (built-in model and data only), each
    population is split across that many processes of cpu_count // workers threads
    (`ticketlab.lottery.executors.processes`), and models that cannot be stacked train independent jobs one per
    process. Re-running a finished experiment trains nothing; damaged files are recomputed
    (`ticketlab.lottery.integrity`). Settings the data cannot satisfy (a batch larger than the training set, steps
    in epochs past the end) and, with `plan_limit`, too large an experiment are refused (ConfigError) before
    anything but the lock is written; a run directory this call made and left holding only that lock (after any
    refusal, e.g. data missing) is removed again.

    One process at a time trains a run directory (RunLockedError for a second one), always with the population
    size and device type of its first run (ConfigError for another). `on_finished` is called with the run
    directory once results.csv is complete, still under the lock (the report layer above draws the report there);
    the files it returns are the result's `report_files`.

    `executor` "ray" trains the populations of the same plan as Ray tasks (`ticketlab.lottery.executors.ray`) of
    `ray_cpus_per_task` CPUs each (and a GPU on CUDA), on the cluster at `ray_address` ("auto": the one this node
    belongs to), a local one started for the run when None, or the session this process already initialized;
    `root` must then be on a filesystem every Ray node sees. `workers` does not apply to it. Under torchrun every
    rank calls this function and each job trains data-parallel on all of them (`executors.torchrun`).
    """
    choice = ExecutorChoice(executor, ray_address, ray_cpus_per_task)
    check_choice(choice)
    if ray_cpus_per_task < 1:
        raise ConfigError(f"ray_cpus_per_task must be at least 1, got {ray_cpus_per_task}")
    config = config.validate()
    check_variants(config)
    fingerprint = ""
    if model is not None:
        config = config.replace(**{"model.name": f"custom:{type(model).__name__}"})
        fingerprint += _model_fingerprint(model)
    if data is not None:
        config = config.replace(**{"data.name": "custom:tensors"})
        fingerprint += _data_fingerprint(data)
    run_dir = run_directory(config, root, fingerprint)
    torch_device = resolve_device(device)
    from ticketlab.training.distributed import from_environment

    plan = RunPlan(config=config, run_dir=run_dir, device=torch_device, fingerprint=fingerprint, model=model,
                   data=data, workers=workers, population=population, progress=progress, on_finished=on_finished,
                   checkpoint_interval_s=checkpoint_interval_s, plan_limit=plan_limit, executor=choice,
                   group=from_environment(torch_device))  # launched by torchrun: this rank's place in the group
    if plan.group is None:
        return _lead_experiment(plan)
    from ticketlab.lottery.executors.torchrun import launch

    return launch(plan, _lead_experiment, _follow_experiment)


def _lead_experiment(plan: RunPlan) -> ExperimentResult:
    """Lock the run directory and run the experiment (alone, or as the leader of a torchrun group)."""
    run_dir = plan.run_dir
    created = not run_dir.exists()
    try:
        with run_lock(run_dir):
            return _run_experiment(plan)
    except BaseException:  # any refusal (missing data, bad config), a crash or Ctrl-C before the first write
        if created and run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(run_dir, ignore_errors=True)  # made by this call and holding nothing but the lock
        raise


def _follow_experiment(plan: RunPlan) -> ExperimentResult:
    """A torchrun follower: load the data and train each job the leader announces; the leader's result."""
    from ticketlab.lottery.data_parallel import follow

    config, group = plan.config, plan.group
    task = load_task(config.task)
    splits = (plan.data if plan.data is not None else load_task_data(task, config)).to(group.device)
    ctx = ExperimentContext(config=config, run_dir=plan.run_dir, data=splits,
                            make_model=model_factory(config, splits, plan.model, task), device=group.device,
                            task=task, group=group)
    rows = follow(ctx, group)
    return ExperimentResult(plan.run_dir, plan.run_dir / "results.csv", rows, {})


def _run_experiment(plan: RunPlan) -> ExperimentResult:
    """The body of `find_tickets`, run while it holds the run directory's lock: check, prepare, train with the
    executor the table chooses (`ticketlab.lottery.executors`), write results.csv and call `on_finished`."""
    config, run_dir = plan.config, plan.run_dir
    task = load_task(config.task)
    splits = (plan.data if plan.data is not None else load_task_data(task, config)).to(plan.device)
    check_against_data(config, task.steps_per_epoch(splits, config.train), task.train_examples(splits),
                       plan.plan_limit)
    check_task_supports(task, config.variants)
    ctx = ExperimentContext(
        config=config,
        run_dir=run_dir,
        data=splits,
        make_model=model_factory(config, splits, plan.model, task),
        device=plan.device,
        checkpoint_interval_s=plan.checkpoint_interval_s,
        task=task,
        group=plan.group,
    )
    ctx.keep_plan()  # settings the model cannot satisfy (prune.layer_rates naming no weight) refuse here
    if plan.data is None:  # before config.json is rewritten: a run refused for its data keeps its record as it was
        ctx.data = task.bind_run(ctx.data, run_dir)  # e.g. the tokenizer this run directory keeps
    _write_config(run_dir, config, plan.fingerprint)
    graph = job_graph(ctx)
    settle_run_settings(ctx, ctx.make_model(0), plan.population)
    repair_run(ctx, graph)
    # versions, host, times (report.html shows them), recorded once every check that can refuse the run has passed
    session = provenance.start_session(run_dir, plan.device)
    if plan.workers > 1 and plan.custom and plan.executor.name == LOCAL:
        print("ticketlab: custom model/data run in this process (workers=1)", file=sys.stderr)
        plan = dataclasses.replace(plan, workers=1)
    bar = _progress_bar(ctx, graph, plan.progress)

    def jobs_start(keys: list[JobKey]) -> None:
        bar.set_description(keys[0].label() + (f" (+{len(keys) - 1} jobs)" if len(keys) > 1 else ""))

    def jobs_done(keys: list[JobKey]) -> None:
        write_results_csv(ctx, graph)

    try:
        execution = Execution(plan=plan, ctx=ctx, graph=graph, bar=bar, template=ctx.make_model(0),
                              on_jobs_start=jobs_start, on_jobs_done=jobs_done)
        choose_executor(execution).train(execution)
    finally:
        bar.close()
        write_results_csv(ctx, graph)

    provenance.end_session(run_dir, session)
    rows = results_rows(ctx, graph)
    report_files = plan.on_finished(run_dir) if plan.on_finished is not None else {}
    return ExperimentResult(run_dir, run_dir / "results.csv", rows, report_files)


def results_rows(ctx: ExperimentContext, graph: dict[JobKey, tuple]) -> list[dict]:
    """One row per (variant, trial, level) that has finished, with its training cost; level 0 of each variant is
    the dense job."""
    rows, costs = [], training_costs(ctx, graph)
    for variant in ctx.config.variants:
        for trial in range(ctx.config.trials):
            for level in range(ctx.levels + 1):
                key = JobKey(trial, 0, DENSE) if level == 0 else JobKey(trial, level, variant)
                if key in graph and is_done(ctx, key):
                    rows.append(result_row(read_result(ctx, key), variant) | costs.get(key, {}))
    return rows


def write_results_csv(ctx: ExperimentContext, graph: dict[JobKey, tuple]) -> Path:
    """Rewrite results.csv (and layer_sparsity.csv) from every finished job's result.json."""
    path = ctx.run_dir / "results.csv"
    atomic_write_bytes(path, results_csv_bytes(results_rows(ctx, graph)))
    layers = io.StringIO()
    layer_writer = csv.writer(layers, lineterminator="\n")
    layer_writer.writerow(["variant", "trial", "level", "layer", "remaining", "total", "remaining_percent"])
    for key in graph:
        if is_done(ctx, key):
            for layer, (remaining, total) in read_result(ctx, key)["layer_remaining"].items():
                layer_writer.writerow([key.variant, key.trial, key.level, layer, remaining, total,
                                       round(100.0 * remaining / total, 4)])
    atomic_write_bytes(ctx.run_dir / "layer_sparsity.csv", layers.getvalue().encode())
    write_variant_summaries(ctx, graph)
    return path


# --- internals -------------------------------------------------------------------------------------


def _write_config(run_dir: Path, config: ExperimentConfig, fingerprint: str) -> None:
    path = run_dir / "config.json"
    record = {"hash": config.hash(), "fingerprint": fingerprint, "config": config.to_dict()}
    if path.exists():
        existing = read_json_record(path, "the directory's name says which config it holds: delete the file and "
                                          "run the same command again to have it rewritten")
        if existing.get("hash") != config.hash():
            raise ConfigError(f"run directory {run_dir} holds a different config (hash {existing.get('hash')})")
        _check_stored_config(path, existing)
    write_json(path, record)


def _check_stored_config(path: Path, existing: dict) -> None:
    """IntegrityError unless a run's config.json still holds the config its hash names: an edited one (another
    task, another rate) would otherwise be overwritten with the command's config and the run continued."""
    from ticketlab.config import config_from_dict

    try:
        stored_hash = config_from_dict(existing.get("config")).hash()
    except TicketlabError as error:
        reason = f"its config is not valid: {error}"
    else:
        if stored_hash == existing["hash"]:
            return
        reason = f"its config hashes to {stored_hash}, not its recorded hash {existing['hash']}"
    raise IntegrityError(f"{path} was changed ({reason}); the run's jobs were trained with the config its hash "
                         "names: restore the file, or delete it and run the same command again to have it rewritten")


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; ConfigError for anything else or absent CUDA."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return resolved


def _model_fingerprint(model: nn.Module) -> str:
    shapes = [(name, tuple(param.shape)) for name, param in model.named_parameters()]
    return f"{type(model).__module__}.{type(model).__qualname__}:{shapes}:{model!r}"


def _data_fingerprint(data: TaskData) -> str:
    """A digest of custom in-memory splits (`ticketlab.data.make_splits`), which their run directory's name covers."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        digest.update(getattr(data, name).detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _progress_bar(ctx: ExperimentContext, graph: dict, enabled: bool):
    if not enabled:
        return NoBar()
    total = sum(job_steps(ctx, key) for key in graph)
    return progress_bar(total, done=sum(job_steps(ctx, key) for key in graph if is_done(ctx, key)))
