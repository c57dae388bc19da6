"""Lottery experiments: the job graph of IMP levels and controls, and `find_tickets` to run it."""

from ticketlab.lottery.experiment import ExperimentResult, find_tickets, run_directory
from ticketlab.lottery.jobs import JobKey

__all__ = ["ExperimentResult", "JobKey", "find_tickets", "run_directory"]
