"""The executor interface: what a run of `find_tickets` is (`RunPlan`), what an executor sees of it while it
trains (`Execution`), and the table of executors (`EXECUTORS`) the run's executor is chosen from.

An executor only trains: the caller has locked the run directory, checked the config against the data, repaired
damaged jobs and drawn the progress bar; the executor trains every job of the graph that is not done, writing
each job's files exactly as the in-process path does (so a resume does not care which executor trained a job),
and calls `on_jobs_done` after each finished batch of jobs so results.csv stays current.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.lottery.estimate import PlanLimit
from ticketlab.registry import Registry

LOCAL = "local"  # the --executor value of the executors on this machine (in-process, processes, torchrun)


@dataclass(frozen=True)
class ExecutorChoice:
    """What the user chose: `--executor` (local, ray, ...) and the Ray settings (`ray_address`: a cluster's
    HOST:PORT, 'auto' or None for a local one; `ray_cpus_per_task`: CPUs, i.e. torch threads, per Ray task)."""

    name: str = LOCAL
    ray_address: str | None = None
    ray_cpus_per_task: int = 1


@dataclass(frozen=True)
class RunPlan:
    """Everything `find_tickets` was asked for, resolved: one object passed down instead of fourteen arguments.

    `config` is the effective config (custom model/data renamed), `fingerprint` what else its run directory's hash
    covers, `model`/`data` the caller's custom model and data (None: the task's), `population` None for the
    automatic size, `group` this rank's torchrun group (None outside torchrun)."""

    config: ExperimentConfig
    run_dir: Path
    device: Any  # torch.device
    fingerprint: str = ""
    model: Any = None
    data: Any = None
    workers: int = 1
    population: int | None = None
    progress: bool = True
    on_finished: Callable[[Path], dict[str, Path]] | None = None  # draws the report; its files are returned
    checkpoint_interval_s: float = 30.0
    plan_limit: PlanLimit | None = None
    executor: ExecutorChoice = ExecutorChoice()
    group: Any = None  # ticketlab.training.distributed.DataParallelGroup

    @property
    def custom(self) -> bool:
        """Whether the caller passed its own model or data (they live in this process only)."""
        return self.model is not None or self.data is not None


@dataclass
class Execution:
    """A run in the middle of training, as an executor sees it: the plan, the experiment context (`ctx`), the job
    graph, the progress bar, a model built once (`template`, which the stacking questions are asked about), and
    the callbacks that label the bar (`on_jobs_start`) and rewrite results.csv (`on_jobs_done`)."""

    plan: RunPlan
    ctx: Any  # ticketlab.lottery.jobs.ExperimentContext
    graph: dict
    bar: Any  # ticketlab.lottery.progress.LabelledBar or NoBar
    template: Any  # nn.Module
    on_jobs_start: Callable[[list], None]
    on_jobs_done: Callable[[list], None]

    @property
    def on_progress(self) -> Callable[[int], None] | None:
        """Steps done, for the bar; None without a bar, which also keeps a task's own bars (translation decoding)
        quiet."""
        return self.bar.update if self.plan.progress else None


@dataclass(frozen=True)
class Executor:
    """One way to train a job graph.

    - `choice`: the `--executor` value it serves ("local" for the executors of this machine).
    - `applies(execution)`: whether it takes this run; the table is asked in order and the first that applies
      trains. Conditions of the built-in entries exclude one another; when none applies, the in-process
      executor (`FALLBACK`) trains.
    - `train(execution)`: train every job not done yet.
    - `check(choice)`: refusals before anything is loaded or written (Ray not installed, a cluster that does not
      answer); ConfigError with one line.
    """

    name: str
    choice: str
    applies: Callable[[Execution], bool]
    train: Callable[[Execution], None]
    check: Callable[[ExecutorChoice], None] = lambda choice: None


EXECUTORS: Registry[Executor] = Registry("executor")
FALLBACK = "in_process"


def executor_choices() -> tuple[str, ...]:
    """The allowed `--executor` values, in table order."""
    return tuple(dict.fromkeys([LOCAL, *(EXECUTORS.get(name).choice for name in EXECUTORS)]))


def check_choice(choice: ExecutorChoice) -> None:
    """ConfigError for an unknown executor, or one its executors refuse (`Executor.check`)."""
    if choice.name not in executor_choices():
        raise ConfigError(f"unknown executor {choice.name!r}; allowed: {', '.join(executor_choices())}")
    for name in EXECUTORS:
        if EXECUTORS.get(name).choice == choice.name:
            EXECUTORS.get(name).check(choice)


def choose_executor(execution: Execution) -> Executor:
    """The first executor of the table serving the run's `--executor` that applies; else the in-process one."""
    for name in EXECUTORS:
        executor = EXECUTORS.get(name)
        if executor.choice == execution.plan.executor.name and name != FALLBACK and executor.applies(execution):
            return executor
    return EXECUTORS.get(FALLBACK)
