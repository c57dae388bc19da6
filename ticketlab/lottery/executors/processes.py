"""The executors of local worker processes (`--workers N`): independent jobs one per process ("processes", for
models that are not stacked), or each population of the plan split across the processes ("population_processes").

On a small CPU, two single-threaded processes beat one two-threaded process for the small networks of these
experiments: every op of a small step pays for waking the second thread, and Python's per-step work runs on one
core. For populations the same holds: 16 LeNet-300-100 members stepped in 10.5 ms as one 2-thread population,
in 9.4 ms as two 1-thread populations of 8 side by side; 32 MNIST-1D MLPs in 3.2 vs 2.4 ms
(benchmarks/population_speed.py prints both).

Each worker loads the dataset once and writes the job files into the run directory as the in-process path does;
the main process keeps the lock, the progress bar and results.csv. A killed main process takes its workers with
it (Linux), and the next run resumes every job from its checkpoint.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Callable, Iterator

from ticketlab.lottery.workers import WorkerSpec, worker_context
from ticketlab.lottery.executors.base import EXECUTORS, LOCAL, Execution, Executor
from ticketlab.lottery.context import ExperimentContext, is_done
from ticketlab.lottery.jobs import run_job
from ticketlab.lottery.keys import JobKey
from ticketlab.lottery.planner import (
    graph_population_size,
    job_priority,
    notify_unstacked,
    population_plan,
    stacks_jobs,
    train_batch,
)

_WORKER: dict = {}  # in a worker process: its experiment context and the progress queue


def population_parts(entry: list[JobKey], workers: int) -> list[list[JobKey]]:
    """An entry of the population plan split into at most `workers` populations, consecutive in plan order and
    as even as possible, the smaller ones first: the first part holds the dependency chains (plan order puts
    them first), so it finishes first and the next entry can start while the rest of this one trains. It
    depends only on the entry and `workers`, so a resumed run (with the same number of workers) re-forms the
    same populations."""
    parts = max(1, min(workers, len(entry)))
    bounds = [index * len(entry) // parts for index in range(parts + 1)]
    return [entry[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


@contextmanager
def worker_pool(ctx: ExperimentContext, workers: int, updates) -> Iterator[ProcessPoolExecutor]:
    """`workers` spawned processes of cpu_count // workers threads each, holding `ctx`'s experiment; Ctrl-C
    stops them at once (a stopped job resumes from its checkpoint)."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with _main_module_not_rerun(), ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(WorkerSpec.of(ctx, threads), updates, os.getpid()),
    ) as pool:
        try:
            yield pool
        except KeyboardInterrupt:
            # workers ignore SIGINT; stop them now (a killed job resumes from its checkpoint next time)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@contextmanager
def _main_module_not_rerun() -> Iterator[None]:
    """While the pool starts its processes, keep multiprocessing from re-running the caller's main module in them.

    Spawned processes import the main module (a user's script run as `__mp_main__`) before they work, so a script
    calling `find_tickets` without an `if __name__ == "__main__":` guard would start the experiment again in
    every worker. The workers need nothing from it (custom models and data train in the calling process), so
    the main module's `__file__` and `__spec__`, from which multiprocessing learns what to import, are hidden
    for the pool's lifetime and restored after."""
    main = sys.modules.get("__main__")
    hidden = {name: main.__dict__[name] for name in ("__file__", "__spec__") if main and name in main.__dict__}
    if "__file__" in hidden:
        del main.__file__
    if "__spec__" in hidden:
        main.__spec__ = None
    try:
        yield
    finally:
        for name, value in hidden.items():
            setattr(main, name, value)


def run_jobs_parallel(ctx: ExperimentContext, graph: dict, workers: int, bar,
                      on_jobs_done: Callable[[list[JobKey]], None]) -> None:
    """Train every job not done, one job per worker process at a time, `workers` at once."""
    updates = multiprocessing.get_context("spawn").Queue()
    with worker_pool(ctx, workers, updates) as pool:
        schedule_jobs(ctx, graph, pool, workers, updates, bar, on_jobs_done)


def schedule_jobs(ctx: ExperimentContext, graph: dict, pool, workers: int, updates, bar,
                  on_jobs_done: Callable[[list[JobKey]], None]) -> None:
    """Submit jobs whose inputs exist, at most `workers` at a time, until every job is done."""
    # every trial's ticket chain first: no trial waits on another
    jobs = sorted((key for key in graph if not is_done(ctx, key)), key=job_priority)

    def done(part: list[JobKey]) -> None:
        bar.set_description(f"done {part[0].label()}")
        on_jobs_done(part)

    _run_when_ready(ctx, graph, [[key] for key in jobs], workers, updates, bar,
                    submit=lambda part: pool.submit(_worker_run, part[0]), on_start=lambda part: None, on_done=done)


def run_populations_parallel(ctx: ExperimentContext, graph: dict, workers: int, size: int, bar,
                             on_jobs_start: Callable[[list[JobKey]], None],
                             on_jobs_done: Callable[[list[JobKey]], None]) -> None:
    """Train the population plan of `size` with every entry split into `workers` populations
    (`population_parts`), trained in the worker processes: each free worker takes the first part, in plan order,
    whose inputs are all done, so a worker that finishes early starts on the next entry instead of waiting for
    the rest of its own."""
    updates = multiprocessing.get_context("spawn").Queue()
    parts = []
    for entry in population_plan(graph, size):
        for part in population_parts(entry, workers):
            part = [key for key in part if not is_done(ctx, key)]
            if part:
                parts.append(part)
    with worker_pool(ctx, workers, updates) as pool:
        _run_when_ready(ctx, graph, parts, workers, updates, bar,
                        submit=lambda part: pool.submit(_worker_train_batch, part, size), on_start=on_jobs_start,
                        on_done=on_jobs_done)


def _run_when_ready(ctx: ExperimentContext, graph: dict, parts: list[list[JobKey]], workers: int, updates, bar, *,
                    submit, on_start, on_done) -> None:
    """Submit each part (a list of jobs) once all its jobs' inputs are done, the first ready ones first, at most
    `workers` at a time, until every part is done; progress from the workers goes onto `bar`."""
    pending, running = list(parts), {}
    while pending or running:
        for part in [part for part in pending if all(is_done(ctx, dep) for key in part for dep in graph[key])]:
            if len(running) >= workers:
                break
            on_start(part)
            running[submit(part)] = part
            pending.remove(part)
        if not running:
            raise RuntimeError(f"no runnable job; waiting on {pending[0][:3]}")
        finished, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
        drain(updates, bar)
        for future in finished:
            future.result()  # re-raise a worker's error here
            on_done(running.pop(future))
    drain(updates, bar)


def drain(updates, bar) -> None:
    """Move the workers' progress reports onto the progress bar."""
    while True:
        try:
            bar.update(updates.get_nowait())
        except queue.Empty:
            return


# --- the executors -------------------------------------------------------------------------------------


def _trains_jobs_apart(execution: Execution) -> bool:
    """Worker processes, a model the plan does not stack, and more than one job left to train."""
    plan, ctx = execution.plan, execution.ctx
    return (plan.workers > 1 and not stacks_jobs(ctx, execution.template, plan.population)
            and sum(not is_done(ctx, key) for key in execution.graph) > 1)


def _train_jobs_apart(execution: Execution) -> None:
    plan, ctx = execution.plan, execution.ctx
    notify_unstacked(ctx, execution.template, plan.population)
    execution.bar.set_waiting(f"starting {plan.workers} worker processes, each loads the data")
    run_jobs_parallel(ctx, execution.graph, plan.workers, execution.bar, execution.on_jobs_done)


def _splits_populations(execution: Execution) -> bool:
    """Worker processes on the CPU (outside torchrun), and populations of more than one job."""
    plan, ctx = execution.plan, execution.ctx
    return (plan.workers > 1 and ctx.device.type == "cpu" and plan.group is None
            and stacks_jobs(ctx, execution.template, plan.population)
            and graph_population_size(ctx, plan.population) > 1)


def _train_split_populations(execution: Execution) -> None:
    plan, ctx = execution.plan, execution.ctx
    execution.bar.set_waiting(f"starting {plan.workers} worker processes, each loads the data")
    run_populations_parallel(ctx, execution.graph, plan.workers, graph_population_size(ctx, plan.population),
                             execution.bar, execution.on_jobs_start, execution.on_jobs_done)


EXECUTORS.register("processes", Executor("processes", LOCAL, applies=_trains_jobs_apart, train=_train_jobs_apart))
EXECUTORS.register("population_processes", Executor("population_processes", LOCAL, applies=_splits_populations,
                                                    train=_train_split_populations))


# --- in a worker process ---------------------------------------------------------------------------------


def _worker_init(spec: WorkerSpec, updates, parent_pid: int):
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the main process
    _die_with_parent(parent_pid)
    _WORKER["ctx"] = worker_context(spec)
    _WORKER["updates"] = updates


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this worker when the `find` process that started it dies (Linux), so a killed run
    leaves no orphan training on and writing into the run directory; a killed job resumes from its checkpoint."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
        except (OSError, AttributeError):  # no prctl in this libc: nothing to ask for
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def worker_experiment() -> tuple[ExperimentContext, Callable[[int], None]]:
    """In a process of `worker_pool`: the experiment it rebuilt and its progress reporter, for work submitted from
    above the lottery layer (the stability analysis's copies)."""
    return _WORKER["ctx"], _WORKER["updates"].put


def _worker_run(key: JobKey) -> JobKey:
    run_job(_WORKER["ctx"], key, on_progress=_WORKER["updates"].put)
    return key


def _worker_train_batch(keys: list[JobKey], size: int) -> list[JobKey]:
    train_batch(_WORKER["ctx"], keys, size, on_progress=_WORKER["updates"].put)
    return keys
