"""Moved to `ticketlab.lottery.executors.ray`; these names stay importable here for the CLI modules that import
them (executor_cli, sweep_cli) until they import the new path."""

from ticketlab.lottery.executors.ray import check_ray_address, import_ray, ray_cluster  # noqa: F401
