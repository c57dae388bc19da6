"""`train_population`: K classifier jobs trained as one batched step, each member exactly the job `train_model`
trains alone.

Exactness against `train_model` (the reference): with one thread on CPU, a member's batched matmuls round
exactly as the single-matrix ones do, and so does the fused optimizer on every element outside a vector tail;
when every tensor size is a multiple of the SIMD width the population is bitwise identical to the job trained
alone (weights and TrainResult; the logged per-step training loss is summed in another order). With more threads
or odd sizes, rounding differs at 1e-8 per step, which training can amplify (see
tests/training/test_population.py for the tolerance).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from ticketlab.config import TrainConfig, parse_step
from ticketlab.store import append_jsonl
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.bookkeeping import TrainingInterrupted, reset_metrics
from ticketlab.training.early_stop import TrainResult
from ticketlab.training.loop import read_checkpoint_or_set_aside
from ticketlab.training.population.classifier import ClassifierPopulation, TensorSplits
from ticketlab.training.population.member import PopulationMember, advance_members, report_progress


@torch.no_grad()
def train_population(
    members: Sequence[PopulationMember],
    data: TensorSplits,
    config: TrainConfig,
    *,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_iterations: int | None = None,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    test_at_every_minimum: bool = False,
) -> list[TrainResult]:
    """Train every member as `train_model` would train it alone, all in one batched step; results in input order.

    Each member ends with the weights, metrics.jsonl rows, rewind snapshots and TrainResult of the same job
    trained alone, to float tolerance. A member with a `job_dir` checkpoints there like train_model (the same
    file format), so a killed population resumes exactly, by this function or by train_model. Members that
    finish leave the population; the rest go on. `stop_after_iterations` raises TrainingInterrupted after that
    many batched steps (to simulate a kill in tests). `on_progress(n)` reports n more member-steps done.

    Test accuracy: train_model evaluates the test set at every new validation minimum, but only the last
    minimum's is reported (early_stop_test_accuracy). By default the population keeps a copy of the weights at
    the minimum and evaluates the test set once it is final (or before a checkpoint), which gives the same
    TrainResult with far fewer test-set passes; metrics.jsonl rows then carry no test_accuracy.
    `test_at_every_minimum=True` evaluates and logs it at every minimum, as train_model does.
    """
    if not members:
        return []
    keep_freed_memory()
    population = ClassifierPopulation(members, data, config, keep_best=not test_at_every_minimum)
    stack = population.stack
    eval_every = parse_step(config.eval_every, population.per_epoch)
    for row, progress in enumerate(population.progress):
        checkpoint = (read_checkpoint_or_set_aside(progress.checkpoint_path, population.device,
                                                   needs_mask=progress.member.mask_schedule is not None)
                      if progress.checkpoint_path is not None else None)
        if checkpoint is not None:
            population.restore_checkpoint(row, checkpoint)
            reset_metrics(progress.metrics_path, keep_through_step=progress.step)
            if on_progress:
                on_progress(progress.step - progress.member.start_step)
        elif progress.metrics_path is not None:
            reset_metrics(progress.metrics_path, keep_through_step=None)
        if progress.at_start():
            progress.member.on_snapshot(progress.step, *stack.model_and_optimizer(row))

    results: list[TrainResult | None] = [None] * len(members)
    _finish_members(population, data, results)
    iterations = 0
    while population.progress:
        population.update_masks()
        population.train_step(data, augment)
        due = advance_members(population.progress, eval_every, stack.model_and_optimizer)
        for progress in population.progress:
            progress.steps_since_eval += 1
        if due:
            _evaluate_members(population, data, due, on_progress, checkpoint_interval_s, test_at_every_minimum)
        _finish_members(population, data, results)
        iterations += 1
        if stop_after_iterations is not None and iterations >= stop_after_iterations and population.progress:
            raise TrainingInterrupted(f"stopped after {iterations} population steps")
    return results


def _evaluate_members(population: ClassifierPopulation, data: TensorSplits, rows: list[int], on_progress,
                      checkpoint_interval_s: float, test_at_every_minimum: bool) -> None:
    """The evaluation point of the members in `rows`: validation for all, test only at a new minimum (and
    unless `test_at_every_minimum`, only once that minimum is reported or checkpointed)."""
    val_losses, val_accuracies = population.evaluate(rows, data.x_val, data.y_val)
    for row in rows:  # a member whose mask schedule is still changing its mask keeps no minimum yet
        population.progress[row].record.candidate = population.progress[row].settled
    improved = [row for row, loss in zip(rows, val_losses) if population.progress[row].record.improves(loss)]
    test_accuracy = {}
    if improved and test_at_every_minimum:
        _, accuracies = population.evaluate(improved, data.x_test, data.y_test, with_loss=False)
        test_accuracy = dict(zip(improved, accuracies))
    elif improved:
        population.remember_best(improved)
    train_losses = population.running_loss[rows].tolist()
    population.running_loss[rows] = 0.0
    now = time.monotonic()
    for row, val_loss, val_accuracy, running in zip(rows, val_losses, val_accuracies, train_losses):
        progress = population.progress[row]
        metrics = progress.record.record(progress.step, running / progress.steps_since_eval, val_loss, val_accuracy,
                                         test_accuracy.get(row))
        progress.steps_since_eval = 0
        if progress.metrics_path is not None:
            append_jsonl(progress.metrics_path, metrics)
    progressed = report_progress(population.progress, rows)
    checkpoint_rows = [row for row in rows if population.progress[row].checkpoint_due(now, checkpoint_interval_s)]
    if checkpoint_rows:  # a checkpoint holds a complete early-stop record, as train_model's does
        population.resolve_pending_tests(checkpoint_rows, data)
        for row in checkpoint_rows:
            population.save_checkpoint(row)
    if on_progress and progressed:
        on_progress(progressed)


def _finish_members(population: ClassifierPopulation, data: TensorSplits, results: list) -> None:
    """Report and remove the members that reached their total steps (final test and train evaluations)."""
    rows = [row for row, progress in enumerate(population.progress) if progress.step >= progress.total]
    if not rows:
        return
    unobserved = [row for row in rows if population.progress[row].record.last_row is None
                  or population.progress[row].record.last_row["step"] != population.progress[row].step]
    if unobserved:  # no training happened (start >= total): observe the start as train_model does
        val_losses, val_accuracies = population.evaluate(unobserved, data.x_val, data.y_val)
        for row, val_loss, val_accuracy in zip(unobserved, val_losses, val_accuracies):
            record = population.progress[row].record
            record.candidate = True
            test = None
            if record.improves(val_loss):
                test = population.evaluate([row], data.x_test, data.y_test, with_loss=False)[1][0]
            record.record(population.progress[row].step, float("nan"), val_loss, val_accuracy, test)
    population.resolve_pending_tests(rows, data)
    # the final weights' test accuracy is known when the last evaluation was the minimum (train_model's rule)
    missing_test = [row for row in rows if population.progress[row].record.best_step != population.progress[row].step]
    final_test = {}
    if missing_test:
        _, accuracies = population.evaluate(missing_test, data.x_test, data.y_test, with_loss=False)
        final_test = dict(zip(missing_test, accuracies))
    train_losses, train_accuracies = population.evaluate(rows, data.x_train, data.y_train)
    for row, train_loss, train_accuracy in zip(rows, train_losses, train_accuracies):
        progress = population.progress[row]
        last_row = progress.record.last_row
        test_accuracy = final_test.get(row, progress.record.best_test_accuracy)
        results[progress.index] = progress.record.result(progress.step, last_row["val_loss"], test_accuracy,
                                                         train_loss, train_accuracy)
        population.stack.write_back(row)
        if progress.checkpoint_path is not None:
            progress.checkpoint_path.unlink(missing_ok=True)
    population.keep([row for row in range(len(population.progress)) if row not in set(rows)])
