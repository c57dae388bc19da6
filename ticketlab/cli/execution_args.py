"""The execution flags every command that trains takes (`find`, `sweep`, `transfer`): --workers, --population,
--device, --checkpoint-every, --executor, --ray-address, --ray-cpus-per-task. They say how jobs run, never what
they compute: the numbers are the same for every value. Importing this module imports neither torch nor ray."""

from __future__ import annotations

import argparse
import contextlib

from ticketlab.errors import ConfigError

MAX_CPUS_PER_TASK = 1024


def add_execution_arguments(parser: argparse.ArgumentParser, *, workers_default: int | None,
                            workers_help: str) -> None:
    """Add the execution flags to a training command's parser; `workers_help` ends the --workers help."""
    parser.add_argument("--workers", type=int, default=workers_default,
                        help="training processes of CPU cores / N threads each: on the CPU every population is split "
                        f"across them, and models that cannot be stacked train one job per process ({workers_help})")
    parser.add_argument("--population", type=int, default=None,
                        help="jobs trained together as one stacked network (default: as many as fit in memory; "
                        "1: one at a time, the reference path)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                        help="write a resume checkpoint at most this often during training (default: 30)")
    add_executor_arguments(parser)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --executor, --ray-address and --ray-cpus-per-task to a command's parser."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local (default): this process (and --workers processes); ray: Ray tasks on a cluster "
                        "(needs pip install 'ticketlab[ray]' and --root on a filesystem every node sees)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="with --executor ray: the cluster to use, host:port or auto (the one this node is part "
                        "of, e.g. under Slurm); default: start a local cluster for the run")
    parser.add_argument("--ray-cpus-per-task", type=int, default=1, metavar="N",
                        help="with --executor ray: CPUs (torch threads) each task asks for (default: 1)")


def executor_options(args: argparse.Namespace) -> dict:
    """The find_tickets keyword arguments of the executor flags; ConfigError for Ray flags without --executor
    ray, a CPU count out of range, or a missing Ray (one line naming the install command)."""
    if args.executor != "ray" and (args.ray_address is not None or args.ray_cpus_per_task != 1):
        raise ConfigError("--ray-address and --ray-cpus-per-task need --executor ray")
    if not 1 <= args.ray_cpus_per_task <= MAX_CPUS_PER_TASK:
        raise ConfigError(f"--ray-cpus-per-task must be between 1 and {MAX_CPUS_PER_TASK}, "
                          f"got {args.ray_cpus_per_task}")
    if args.executor == "ray":
        from ticketlab.lottery.executors.ray import check_ray_address, import_ray

        import_ray()
        check_ray_address(args.ray_address)  # before any data load or run directory: nothing listening, one line
    return {"executor": args.executor, "ray_address": args.ray_address, "ray_cpus_per_task": args.ray_cpus_per_task}


def ray_cluster_for(executor: dict):
    """One Ray cluster for every experiment a command runs (a sweep's rewinds); nothing for the local executor."""
    if executor["executor"] != "ray":
        return contextlib.nullcontext()
    from ticketlab.lottery.executors.ray import ray_cluster

    return ray_cluster(executor["ray_address"])
