"""`find_tickets`: run a whole lottery experiment (all trials, levels and variants), resumably."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ticketlab.config import ExperimentConfig, PlanLimit, check_against_data
from ticketlab.data import DataSplits
from ticketlab.errors import ConfigError, IntegrityError, TicketlabError
from ticketlab.lottery import provenance
from ticketlab.lottery.integrity import LOCK_FILE, repair_run, run_lock
from ticketlab.lottery.planner import (
    graph_population_size,
    notify_unstacked,
    run_graph,
    settle_run_settings,
    stacks_jobs,
)
from ticketlab.lottery.processes import run_jobs_parallel, run_populations_parallel
from ticketlab.lottery.jobs import (
    DENSE,
    ExperimentContext,
    JobKey,
    check_task_supports,
    is_done,
    job_graph,
    job_steps,
    read_result,
    write_variant_summaries,
)
from ticketlab.lottery.variants import check_variants
from ticketlab.tasks import load_task
from ticketlab.tasks.base import Task, load_task_data
from ticketlab.store import atomic_write_bytes, read_json_record, write_json

RESULT_COLUMNS = (
    "variant",
    "trial",
    "level",
    "weights_remaining_percent",
    "early_stop_iteration",
    "early_stop_test_accuracy",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "final_test_accuracy",
    "final_train_accuracy",
    "final_val_loss",
    "final_iteration",
    # task-neutral: the task's primary test metric (accuracy, perplexity, bits_per_char, ...)
    "metric",
    "early_stop_test_metric",
    "final_test_metric",
)


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
    data: DataSplits | None = None,
    workers: int = 1,
    population: int | None = None,
    device: str = "auto",
    progress: bool = True,
    report: bool = True,
    checkpoint_interval_s: float = 30.0,
    plan_limit: PlanLimit | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_cpus_per_task: int = 1,
) -> ExperimentResult:
    """Run (or resume) a lottery-ticket experiment and write results.csv and the report.

    `model` (any nn.Module; its Linear/Conv/Embedding weights are pruned) and `data` (see
    `ticketlab.data.make_splits`) replace the config's built-in model and dataset. Jobs that are ready
    together train as one stacked population (`population`: None sizes it from the memory budget, 1 trains one
    job at a time, the reference path). With `workers` > 1 on the CPU (built-in model and data only), each
    population is split across that many processes of cpu_count // workers threads (`ticketlab.lottery.processes`),
    and models that cannot be stacked train independent jobs one per process. Re-running a finished experiment trains
    nothing; damaged files are recomputed (`ticketlab.lottery.integrity`). Settings the data cannot satisfy (a
    batch larger than the training set, steps in epochs past the end) and, with `plan_limit`, too large an
    experiment are refused (ConfigError) before anything but the lock is written; a run directory this call made
    and left holding only that lock (after any refusal, e.g. data missing) is removed again.

    One process at a time trains a run directory (RunLockedError for a second one), always with the population
    size and device type of its first run (ConfigError for another).

    `executor` "ray" trains the populations of the same plan as Ray tasks (`ticketlab.lottery.ray_executor`) of
    `ray_cpus_per_task` CPUs each (and a GPU on CUDA), on the cluster at `ray_address` ("auto": the one this node
    belongs to), a local one started for the run when None, or the session this process already initialized;
    `root` must then be on a filesystem every Ray node sees. `workers` does not apply to it.
    """
    from ticketlab.lottery.ray_executor import check_executor

    check_executor(executor, ray_address)
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

    executor_settings = (executor, ray_address, ray_cpus_per_task)
    group = from_environment(torch_device)  # launched by torchrun: this rank's place in the process group
    if group is None:
        return _lead_experiment(config, fingerprint, run_dir, torch_device, model, data, workers, population,
                                progress, report, checkpoint_interval_s, plan_limit, executor_settings, None)
    from ticketlab.lottery import data_parallel

    if executor != "local":
        raise ConfigError(f"--executor {executor} does not run under torchrun (each job already trains on all its "
                          "processes); use one or the other")
    data_parallel.check_ranks_agree(group, config, fingerprint, workers, population)
    if not group.is_leader:
        return _follow_experiment(config, run_dir, group, model, data)
    try:
        result = _lead_experiment(config, fingerprint, run_dir, group.device, model, data, 1, 1, progress, report,
                                  checkpoint_interval_s, plan_limit, executor_settings, group)
    except BaseException as error:  # a refusal, a crash or Ctrl-C: no rank may wait on for the leader
        data_parallel.stop_followers(group, error)
        raise
    data_parallel.end_experiment(group, result.rows)
    return result


def _lead_experiment(config, fingerprint, run_dir, torch_device, model, data, workers, population, progress, report,
                     checkpoint_interval_s, plan_limit, executor_settings, group) -> ExperimentResult:
    """Lock the run directory and run the experiment (alone, or as the leader of a torchrun `group`)."""
    created = not run_dir.exists()
    try:
        with run_lock(run_dir):
            return _run_experiment(config, fingerprint, run_dir, torch_device, model, data, workers, population,
                                   progress, report, checkpoint_interval_s, plan_limit, executor_settings, group)
    except BaseException:  # any refusal (missing data, bad config), a crash or Ctrl-C before the first write
        if created and run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(run_dir, ignore_errors=True)  # made by this call and holding nothing but the lock
        raise


def _follow_experiment(config, run_dir, group, model, data) -> ExperimentResult:
    """A torchrun follower: load the data and train each job the leader announces; the leader's result."""
    from ticketlab.lottery.data_parallel import follow

    task = load_task(config.task)
    splits = (data if data is not None else load_task_data(task, config)).to(group.device)
    ctx = ExperimentContext(config=config, run_dir=run_dir, data=splits,
                            make_model=model_factory(config, splits, model, task), device=group.device, task=task,
                            group=group)
    rows = follow(ctx, group)
    return ExperimentResult(run_dir, run_dir / "results.csv", rows, {})


def _run_experiment(config, fingerprint, run_dir, torch_device, model, data, workers, population, progress, report,
                    checkpoint_interval_s, plan_limit, executor_settings=("local", None, 1),
                    group=None) -> ExperimentResult:
    """The body of `find_tickets`, run while it holds the run directory's lock."""
    task = load_task(config.task)
    splits = (data if data is not None else load_task_data(task, config)).to(torch_device)
    train_examples = len(splits.x_train) if isinstance(splits, DataSplits) else None
    check_against_data(config, task.steps_per_epoch(splits, config.train), train_examples, plan_limit)
    check_task_supports(task, config.variants)
    ctx = ExperimentContext(
        config=config,
        run_dir=run_dir,
        data=splits,
        make_model=model_factory(config, splits, model, task),
        device=torch_device,
        checkpoint_interval_s=checkpoint_interval_s,
        task=task,
        group=group,
    )
    ctx.keep_plan()  # settings the model cannot satisfy (prune.layer_rates naming no weight) refuse here
    if data is None:  # before config.json is rewritten: a run refused for its data keeps its record as it was
        ctx.data = task.bind_run(ctx.data, run_dir)  # e.g. the tokenizer this run directory keeps
    _write_config(run_dir, config, fingerprint)
    graph = job_graph(ctx)
    settle_run_settings(ctx, ctx.make_model(0), population)
    repair_run(ctx, graph)
    # versions, host, times (report.html shows them), recorded once every check that can refuse the run has passed
    session = provenance.start_session(run_dir, torch_device)
    if workers > 1 and (model is not None or data is not None) and executor_settings[0] == "local":
        print("ticketlab: custom model/data run in this process (workers=1)", file=sys.stderr)
        workers = 1
    bar = _progress_bar(ctx, graph, progress)
    updates = bar.update if progress else None  # None also keeps a task's own bars (translation decoding) quiet

    def jobs_start(keys: list[JobKey]) -> None:
        bar.set_description(keys[0].label() + (f" (+{len(keys) - 1} jobs)" if len(keys) > 1 else ""))

    def jobs_done(keys: list[JobKey]) -> None:
        write_results_csv(ctx, graph)

    try:
        template = ctx.make_model(0)
        executor, ray_address, ray_cpus_per_task = executor_settings
        if executor == "ray":
            from ticketlab.lottery.ray_executor import ray_cluster, run_graph_ray

            bar.set_waiting("starting the Ray tasks, each loads the data")
            with ray_cluster(ray_address):
                run_graph_ray(ctx, graph, population=population, model=model, data=data,
                              cpus_per_task=ray_cpus_per_task, on_progress=updates, on_jobs_done=jobs_done)
        elif workers > 1 and not stacks_jobs(ctx, template, population) and sum(
                not is_done(ctx, key) for key in graph) > 1:
            notify_unstacked(ctx, template, population)
            bar.set_waiting(f"starting {workers} worker processes, each loads the data")
            run_jobs_parallel(ctx, graph, workers, bar, jobs_done)
        elif (workers > 1 and ctx.device.type == "cpu" and group is None and stacks_jobs(ctx, template, population)
              and graph_population_size(ctx, population) > 1):
            bar.set_waiting(f"starting {workers} worker processes, each loads the data")
            run_populations_parallel(ctx, graph, workers, graph_population_size(ctx, population), bar, jobs_start,
                                     jobs_done)
        else:
            run_graph(ctx, graph, population=population, on_progress=updates, on_jobs_start=jobs_start,
                      on_jobs_done=jobs_done)
    finally:
        bar.close()
        write_results_csv(ctx, graph)

    provenance.end_session(run_dir, session)
    rows = results_rows(ctx, graph)
    report_files: dict[str, Path] = {}
    if report:
        from ticketlab.report import write_report
        from ticketlab.report.html_report import write_html_report

        report_files = write_report(run_dir)
        report_files["html"] = write_html_report(run_dir)
    return ExperimentResult(run_dir, run_dir / "results.csv", rows, report_files)


def model_factory(
    config: ExperimentConfig, data, model: nn.Module | None, task: Task | None = None
) -> Callable[[int], nn.Module]:
    """seed -> a freshly initialized model (a deep copy of `model`, or the task's network for the config)."""
    task = task or load_task(config.task)

    def make(seed: int) -> nn.Module:
        network = copy.deepcopy(model).cpu() if model is not None else task.build_model(config, data)
        return task.initialize(network, config, seed)

    return make


def results_rows(ctx: ExperimentContext, graph: dict[JobKey, tuple]) -> list[dict]:
    """One row per (variant, trial, level) that has finished; level 0 of each variant is the dense job."""
    rows = []
    for variant in ctx.config.variants:
        for trial in range(ctx.config.trials):
            for level in range(ctx.levels + 1):
                key = JobKey(trial, 0, DENSE) if level == 0 else JobKey(trial, level, variant)
                if key in graph and is_done(ctx, key):
                    result = with_generic_metric(read_result(ctx, key))
                    rows.append({column: result.get(column) for column in RESULT_COLUMNS} | {"variant": variant})
    return rows


def with_generic_metric(result: dict) -> dict:
    """A job's result with the task-neutral metric keys; results written before tasks existed are accuracy."""
    if "metric" in result:
        return result
    return result | {"metric": "accuracy", "early_stop_test_metric": result.get("early_stop_test_accuracy"),
                     "final_test_metric": result.get("final_test_accuracy")}


def write_results_csv(ctx: ExperimentContext, graph: dict[JobKey, tuple]) -> Path:
    """Rewrite results.csv (and layer_sparsity.csv) from every finished job's result.json."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(results_rows(ctx, graph))
    path = ctx.run_dir / "results.csv"
    atomic_write_bytes(path, buffer.getvalue().encode())
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


def _data_fingerprint(data: DataSplits) -> str:
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        digest.update(getattr(data, name).detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _NoBar:
    def update(self, count: int = 1) -> None: ...
    def set_description(self, text: str) -> None: ...
    def set_waiting(self, text: str) -> None: ...
    def close(self) -> None: ...


class _LabelledBar:
    """A tqdm bar that always says what is happening: the job(s) training and, until the first steps are reported,
    what the run waits for (preparing the first job; worker processes or Ray tasks starting and loading data)."""

    FIRST_WAIT = "preparing the first job"

    def __init__(self, bar) -> None:
        self.bar, self.label, self.waiting = bar, "", self.FIRST_WAIT
        self.waits_for_workers = False  # processes or Ray tasks still starting when the first jobs are handed out
        self._show()

    def _show(self) -> None:
        text = self.label if not self.waiting else f"{self.label} ({self.waiting})" if self.label else self.waiting
        self.bar.set_description(text)

    def set_waiting(self, text: str) -> None:
        self.waiting, self.waits_for_workers = text, True
        self._show()

    def set_description(self, text: str) -> None:
        self.label = text
        if not self.waits_for_workers:  # in this process: the job starts now
            self.waiting = ""
        self._show()

    def update(self, count: int = 1) -> None:
        if self.waiting:
            self.waiting = ""
            self._show()
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(ctx: ExperimentContext, graph: dict, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    total = sum(job_steps(ctx, key) for key in graph)
    done = sum(job_steps(ctx, key) for key in graph if is_done(ctx, key))
    return _LabelledBar(tqdm(total=total, initial=done, unit="it", unit_scale=True, dynamic_ncols=True,
                             file=sys.stderr, desc=_LabelledBar.FIRST_WAIT))
