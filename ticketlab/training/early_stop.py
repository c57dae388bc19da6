"""Early stopping and the one result class every trainer returns.

A run keeps the evaluation with the lowest validation loss (a task whose number rises, such as an agent's return,
logs its negative as the loss) and the numbers it needs there (the test split's, evaluated only at new minima),
and reports both those and the final ones."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

_RECORD_KEYS = ("best_step", "best_val_loss", "last_row")


class EarlyStop:
    """The lowest validation loss so far, its step, the numbers `best` kept for it and the last metrics row.

    `keep_first`: the first evaluation is kept even when its loss is no number (a trainer that must hold the
    weights of some evaluation, such as the translator's). `candidate` False: the evaluations that follow are
    logged but never kept (the engine sets it while a `MaskSchedule` is still changing the mask)."""

    def __init__(self, best: dict | None = None, keep_first: bool = False) -> None:
        self.best_step, self.best_val_loss = -1, math.inf
        self.best: dict = dict(best or {})
        self.last_row: dict | None = None
        self.keep_first = keep_first
        self.candidate = True

    def improves(self, val_loss: float) -> bool:
        """Whether an evaluation with this validation loss is a new minimum (and so needs the test numbers)."""
        return self.candidate and (val_loss < self.best_val_loss or (self.keep_first and self.best_step < 0))

    def observe(self, row: dict, val_loss: float, at_best: Callable[[], dict] | None = None) -> dict:
        """Keep metrics `row` (it holds "step") as the last one; where `val_loss` is a new minimum, keep its step,
        its loss and the numbers `at_best()` measures there (called only then). Returns `row`."""
        if self.improves(val_loss):
            self.best_step, self.best_val_loss = row["step"], val_loss
            self.best = at_best() if at_best is not None else {}
        self.last_row = row
        return row

    def state(self) -> dict:
        """JSON for a checkpoint: best_step, best_val_loss, last_row and each kept number as "best_<name>"."""
        return {"best_step": self.best_step, "best_val_loss": self.best_val_loss,
                **{f"best_{name}": value for name, value in self.best.items()}, "last_row": self.last_row}

    def load(self, state: dict) -> None:
        """Inverse of `state` (a checkpoint without last_row leaves it None)."""
        self.best_step, self.best_val_loss = state["best_step"], state["best_val_loss"]
        self.last_row = state.get("last_row")
        self.best = {name[5:]: value for name, value in state.items() if name not in _RECORD_KEYS}


@dataclass(frozen=True)
class TrainResult:
    """What one training run reports, for every task: the early-stopping point (lowest validation loss) and the
    end, each with the task's primary test metric (accuracy and BLEU as fractions or points as the task's metric
    says, perplexity, bits per character, return). Iterations are optimizer steps (PPO iterations for agents).

    `details` holds the task's own numbers under the names result.json gives them (accuracies, test losses, the
    BLEU signature, episode returns, ...); they read as attributes too (`result.final_test_accuracy`)."""

    early_stop_iteration: int
    early_stop_val_loss: float
    early_stop_test_metric: float
    final_iteration: int
    final_val_loss: float
    final_test_metric: float
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The numbers as result.json holds them: the fields above and the task's details, in one flat dict."""
        return {"early_stop_iteration": self.early_stop_iteration, "early_stop_val_loss": self.early_stop_val_loss,
                "early_stop_test_metric": self.early_stop_test_metric, "final_iteration": self.final_iteration,
                "final_val_loss": self.final_val_loss, "final_test_metric": self.final_test_metric, **self.details}

    def __getattr__(self, name: str):
        details = self.__dict__.get("details")
        if details is not None and name in details:
            return details[name]
        raise AttributeError(f"{type(self).__name__} has no {name!r}")


def record_result(record: EarlyStop, step: int, metric: str, final_test: dict, **details) -> TrainResult:
    """The `TrainResult` of a task whose evaluations are {"loss", metric, ...} dicts and whose record keeps the test
    evaluation at the best step as `best["test"]`: the early-stop and final test metric and losses, and `details`."""
    best_test = record.best["test"]
    return TrainResult(
        early_stop_iteration=record.best_step,
        early_stop_val_loss=record.best_val_loss,
        early_stop_test_metric=best_test[metric],
        final_iteration=step,
        final_val_loss=record.last_row["val_loss"],
        final_test_metric=final_test[metric],
        details={"early_stop_test_loss": best_test["loss"], "final_test_loss": final_test["loss"], **details},
    )
