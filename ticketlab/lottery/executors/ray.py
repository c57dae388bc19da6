"""The Ray executor (`--executor ray`): each entry of the population plan is one Ray task on a cluster.

The plan is the local planner's (`population_plan`): the same populations, so the same numbers. Entries run as
soon as the entries holding their inputs are done, as many at once as the cluster has resources for (each task
asks for `cpus_per_task` CPUs, and one GPU when the device is CUDA).

Artifacts: the run directory must lie on a filesystem every Ray node mounts at the same path (NFS, Lustre, a
cluster's home or scratch). Workers write the job files there exactly as a local run does; the driver (the
`find` process) holds the run lock and writes results.csv, layer_sparsity.csv and the report. Each worker checks
at its start that it can see and write the run directory, and names the host where it cannot.

Faults: a task whose worker process or node dies is retried by Ray (`max_retries`); the retried jobs resume from
their checkpoints (every job checkpoints), so nothing finished is lost. A killed driver takes its tasks with it
(Ray fate-shares tasks with their owner); running the same command again resumes like any run.

Ray is an optional extra (`pip install 'ticketlab[ray]'`); this module imports it only when called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Callable, Iterator

from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.lottery.workers import WorkerSpec, worker_context
from ticketlab.lottery.executors.base import EXECUTORS, Execution, Executor, ExecutorChoice
from ticketlab.lottery.context import ExperimentContext, is_done
from ticketlab.lottery.jobs import job_steps
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.planner import graph_population_size, population_plan, train_batch

RAY_INSTALL = "pip install 'ticketlab[ray]'"
MAX_RETRIES = 3  # per task, for lost workers and nodes (not for errors raised by training itself)
TASK_NAME = "ticketlab_train_batch"  # what `ray status`, the dashboard and `ps` show for a running task
CONNECT_TIMEOUT_S = 10.0  # ray.init retries an address nobody listens on forever: probe it first, this long


class RayExecutorError(TicketlabError):
    """The Ray cluster lost a task more often than it retries it, or cannot be reached."""


def check_ray(choice: ExecutorChoice) -> None:
    """ConfigError without Ray installed; the cluster at `choice.ray_address` must answer (`check_ray_address`)."""
    import_ray()
    check_ray_address(choice.ray_address)


def train_on_ray(execution: Execution) -> None:
    """Train the run's graph as Ray tasks on the cluster the user chose (or a local one, see `ray_cluster`)."""
    plan = execution.plan
    execution.bar.set_waiting("starting the Ray tasks, each loads the data")
    with ray_cluster(plan.executor.ray_address):
        run_graph_ray(execution.ctx, execution.graph, population=plan.population, model=plan.model, data=plan.data,
                      cpus_per_task=plan.executor.ray_cpus_per_task, on_progress=execution.on_progress,
                      on_jobs_done=execution.on_jobs_done)


def import_ray():
    """The ray module, or a ConfigError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


@contextlib.contextmanager
def ray_cluster(address: str | None) -> Iterator[None]:
    """Connect to the Ray cluster at `address` ('auto': the one this node belongs to, e.g. started by `ray start`)
    or, with None, start a local one for this run. A session already initialized in this process (ray.init by the
    caller) is used as it is and left running."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    check_ray_address(address)
    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)
        else:
            ray.init(address=address, logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise RayExecutorError(f"cannot connect to the Ray cluster at --ray-address {address!r} ({text}); start "
                               "one with `ray start --head`, or leave out --ray-address for a local one") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_ray_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """RayExecutorError unless something listens at a HOST:PORT `address` within `timeout_s` seconds (Ray itself
    would retry forever); ConfigError for an address that is neither HOST:PORT, ray://HOST:PORT nor 'auto'.
    None and 'auto' need no probe: Ray starts a local cluster or finds none at once."""
    if address is None or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address {address!r} is not an address; allowed: HOST:PORT (e.g. 10.0.0.5:6379), "
                          "ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, socket.timeout) else (error.strerror or type(error).__name__)
        raise RayExecutorError(f"cannot connect to the Ray cluster at --ray-address {address!r} ({reason} after "
                               f"at most {timeout_s:g} s); start one there with `ray start --head`, or leave out "
                               "--ray-address for a local one") from None


def run_graph_ray(
    ctx: ExperimentContext,
    graph: dict[JobKey, tuple[JobKey, ...]],
    *,
    population: int | None = None,
    model=None,
    data=None,
    cpus_per_task: int = 1,
    on_progress: Callable[[int], None] | None = None,
    on_jobs_done: Callable[[list[JobKey]], None] | None = None,
) -> None:
    """Train every job of `graph` not done yet as Ray tasks (one per population of the plan `run_graph` makes),
    in the Ray session of this process (see `ray_cluster`). `model`/`data`: the caller's custom model and data,
    shipped to the workers through Ray's object store. `on_progress` gets the steps of each finished job."""
    ray = import_ray()
    size = graph_population_size(ctx, population)
    plan = population_plan(graph, size)
    entry_of = {key: index for index, entry in enumerate(plan) for key in entry}
    inputs = [{entry_of[dep] for key in entry for dep in graph[key]} - {index} for index, entry in enumerate(plan)]
    done = {index for index, entry in enumerate(plan) if all(is_done(ctx, key) for key in entry)}
    waiting = [index for index in range(len(plan)) if index not in done]

    # Ray picks the GPU of each task
    spec = WorkerSpec.of(ctx, cpus_per_task, device="cuda" if ctx.device.type == "cuda" else str(ctx.device))
    task = ray.remote(_train_batch_task).options(
        name=TASK_NAME, num_cpus=cpus_per_task, num_gpus=1 if ctx.device.type == "cuda" else 0,
        max_retries=MAX_RETRIES, retry_exceptions=False,
    )
    model_ref = ray.put(model) if model is not None else None
    data_ref = ray.put(data) if data is not None else None
    running: dict = {}
    try:
        while waiting or running:
            for index in [index for index in waiting if inputs[index] <= done]:  # plan order: chains first
                keys = [key for key in plan[index] if not is_done(ctx, key)]
                running[task.remote(spec, model_ref, data_ref, keys, size)] = (index, keys)
                waiting.remove(index)
            if not running:
                raise RuntimeError(f"no runnable population; waiting on {[plan[i][0] for i in waiting[:3]]}")
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                index, keys = running.pop(ref)
                _result(ray, ref, keys)
                done.add(index)
                if on_progress:
                    on_progress(sum(job_steps(ctx, key) for key in keys))
                if on_jobs_done:
                    on_jobs_done(keys)
    except BaseException:
        for ref in running:  # an error or Ctrl-C: stop the rest (a stopped job resumes from its checkpoint)
            ray.cancel(ref, force=True)
        raise


def _result(ray, ref, keys: list[JobKey]) -> None:
    """Wait for a finished task; re-raise a training error as itself, a task lost too often as one line."""
    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, (TicketlabError, OSError)):
            raise cause from None
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as error:
        raise RayExecutorError(f"Ray lost the task training {keys[0].label()} more than {MAX_RETRIES} times "
                               f"({type(error).__name__}); finished jobs are saved, run the same command again to "
                               "resume") from None


# --- in the Ray worker -------------------------------------------------------------------------------

_WORKER_CONTEXT: dict = {}  # one experiment per worker process: data loaded once, reused by later tasks


def _train_batch_task(spec: WorkerSpec, model, data, keys: list[JobKey], size: int) -> list[JobKey]:
    """A Ray task: train one population (or job) of the plan into the shared run directory."""
    ctx = _worker_context(spec, model, data)
    train_batch(ctx, keys, size)
    return keys


def _worker_context(spec: WorkerSpec, model, data) -> ExperimentContext:
    cache_key = (spec.run_dir, spec.device, spec.threads)
    cached = _WORKER_CONTEXT.get("ctx")
    if cached is not None and _WORKER_CONTEXT["key"] == cache_key:
        return cached
    _WORKER_CONTEXT.clear()
    check_shared_run_dir(Path(spec.run_dir))
    ctx = worker_context(spec, model, data)
    _WORKER_CONTEXT.update(ctx=ctx, key=cache_key)
    return ctx


def check_shared_run_dir(run_dir: Path) -> None:
    """ConfigError unless this process sees the run directory the driver made (its config.json) and can write
    into it: on a cluster, --root must be on a filesystem every node mounts at the same path."""
    host = socket.gethostname()
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"the Ray worker on {host} does not see run directory {run_dir}: --root must be on a "
                          "filesystem every Ray node mounts at the same path")
    probe = run_dir / f".ray_probe_{host}_{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"the Ray worker on {host} cannot write run directory {run_dir} "
                          f"({error.strerror}): --root must be writable from every Ray node") from None


EXECUTORS.register("ray", Executor("ray", "ray", applies=lambda execution: True, train=train_on_ray, check=check_ray))
