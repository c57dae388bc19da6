"""One readable training loop with exact masks, early-stopping bookkeeping and exact resume.

Exactness: pruned weights are zero at the start, their gradients are zeroed before every optimizer step
(so momentum/Adam state and weight decay never move them) and the weights are re-masked after the step.
Resume: a checkpoint holds the weights, the optimizer state, the step and the early-stop record; the data
order and learning rate are pure functions of the step, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import TrainConfig, parse_step
from ticketlab.data.splits import DataSplits
from ticketlab.seeds import derive_seed
from ticketlab.errors import IntegrityError
from ticketlab.store import (
    append_jsonl,
    load_tensors_and_metadata,
    read_jsonl,
    save_tensors,
    set_aside,
    write_jsonl,
)
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.distributed import DataParallelGroup
from ticketlab.training.optim import (
    build_optimizer,
    learning_rate_at,
    load_optimizer_tensors,
    optimizer_tensors,
)

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
EVAL_BATCH = 1024  # bounds activation memory of conv nets (a ResNet-20 at 8192 images needs ~0.5 GB a layer)
EVAL_INPUT_FLOATS = EVAL_BATCH * 1024  # inputs per evaluation batch: larger examples get smaller batches


def eval_batch_size(example_floats: int) -> int:
    """Examples per evaluation batch: EVAL_BATCH for inputs up to 1,024 floats (MNIST, MNIST-1D), fewer for larger
    ones (341 CIFAR images), so a conv net's activations stay bounded: evaluating ResNet-20 (width 16) on 1,024
    CIFAR images at once added 340 MiB to peak memory."""
    return max(1, min(EVAL_BATCH, EVAL_INPUT_FLOATS // max(1, example_floats)))


class TrainingInterrupted(Exception):
    """Raised by `stop_after_step` to simulate a kill in tests (no checkpoint is written at that moment)."""


@dataclass(frozen=True)
class TrainResult:
    """What one training run reports. Accuracies are fractions in [0, 1]; iterations are optimizer steps."""

    early_stop_iteration: int
    early_stop_val_loss: float
    early_stop_val_accuracy: float
    early_stop_test_accuracy: float
    final_iteration: int
    final_val_loss: float
    final_test_accuracy: float
    final_train_accuracy: float
    final_train_loss: float

    def to_dict(self) -> dict:
        """The fields, plus the task-neutral names of the primary metric (accuracy) every task reports."""
        values = asdict(self)
        values["early_stop_test_metric"] = self.early_stop_test_accuracy
        values["final_test_metric"] = self.final_test_accuracy
        return values


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    """Batches per epoch; the last partial batch is dropped so every step sees `batch_size` examples."""
    return max(num_train // batch_size, 1)


def batch_indices(step: int, num_train: int, batch_size: int, data_seed: int) -> torch.Tensor:
    """Indices of the examples seen at `step`: epoch e is a permutation drawn from (data_seed, e)."""
    per_epoch = iterations_per_epoch(num_train, batch_size)
    epoch, position = divmod(step, per_epoch)
    order = _epoch_order(num_train, data_seed, epoch)
    return order[position * batch_size : (position + 1) * batch_size]


def epoch_order(num_train: int, data_seed: int, epoch: int) -> torch.Tensor:
    """The order (a permutation of 0..num_train-1) in which epoch `epoch` visits the training examples."""
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "epoch", epoch))
    return torch.randperm(num_train, generator=generator)


def _epoch_order(num_train: int, data_seed: int, epoch: int, _cache: dict = {}) -> torch.Tensor:
    key = (num_train, data_seed, epoch)
    if key not in _cache:  # one permutation per epoch; a tiny bounded memo, not shared state that matters
        _cache.clear()
        _cache[key] = epoch_order(num_train, data_seed, epoch)
    return _cache[key]


def num_train_examples(data) -> int:
    """Training examples of in-memory splits or of streamed data (an image folder's `num_train`)."""
    return len(data.x_train) if isinstance(data, DataSplits) else data.num_train


def data_device(data) -> torch.device:
    return data.x_train.device if isinstance(data, DataSplits) else data.device


def training_batches(data, start_step: int, total_steps: int, batch_size: int, data_seed: int,
                     shard: tuple[int, int] | None = None):
    """(inputs, labels) of each step from `start_step` to `total_steps`, in the order `batch_indices` draws.

    In-memory splits are indexed (whole global batches); streamed data (an image folder) decodes the same indices
    in worker processes, its random transforms seeded from (data_seed, step) and each example's place in the
    global batch, and with `shard` (rank, world size) decodes only that rank's contiguous slice."""
    num_train = num_train_examples(data)
    if isinstance(data, DataSplits):
        device = data.x_train.device
        for step in range(start_step, total_steps):
            indices = batch_indices(step, num_train, batch_size, data_seed).to(device)
            yield data.x_train.index_select(0, indices), data.y_train.index_select(0, indices)
        return
    rank, world = shard or (0, 1)
    size = batch_size // world
    steps = ((batch_indices(step, num_train, batch_size, data_seed)[rank * size:(rank + 1) * size],
              derive_seed(data_seed, "transform", step), rank * size) for step in range(start_step, total_steps))
    yield from data.train_batches(steps)


def evaluate_split(model: nn.Module, data, split: str) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on split "train", "val" or "test" of in-memory or streamed data."""
    if isinstance(data, DataSplits):
        inputs, labels = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                          "test": (data.x_test, data.y_test)}[split]
        return evaluate(model, inputs, labels)
    return evaluate_batches(model, data.evaluate_batches(split))


def first_inputs(data, split: str, count: int) -> torch.Tensor:
    """The first `count` inputs of `split` (evaluation transform for streamed data), on the data's device."""
    if isinstance(data, DataSplits):
        return {"train": data.x_train, "val": data.x_val, "test": data.x_test}[split][:count]
    chunks, held = [], 0
    for inputs, _ in data.evaluate_batches(split):
        chunks.append(inputs[: count - held])
        held += len(chunks[-1])
        if held >= count:
            break
    return torch.cat(chunks)


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` over an iterable of (inputs, labels), in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, labels in batches:
        logits = model(inputs)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").double().item()
        correct += int((logits.argmax(dim=1) == labels).sum())
        count += len(labels)
    model.train(was_training)
    return total_loss / max(count, 1), correct / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction) of `model` on a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=inputs.device)
    correct = torch.zeros((), dtype=torch.int64, device=inputs.device)
    batch = eval_batch_size(inputs[0].numel())
    for start in range(0, len(inputs), batch):
        logits = model(inputs[start : start + batch])
        batch_labels = labels[start : start + batch]
        total_loss += F.cross_entropy(logits, batch_labels, reduction="sum").double()
        correct += (logits.argmax(dim=1) == batch_labels).sum()
    model.train(was_training)
    return total_loss.item() / len(inputs), correct.item() / len(inputs)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned entries of the model's weights in place."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask.to(parameters[name].device))


@torch.no_grad()
def masked_optimizer_step(
    optimizer: torch.optim.Optimizer,
    masked_pairs: list[tuple[torch.Tensor, torch.Tensor]],
    parameters: list[torch.Tensor],
    clip_grad_norm: float | None = None,
) -> None:
    """One exact-mask update: zero the pruned gradients, clip the global gradient norm of `parameters` to
    `clip_grad_norm` (if set), step, and zero the pruned weights again (so no optimizer state moves them)."""
    if masked_pairs:
        masks = [mask for _, mask in masked_pairs]
        torch._foreach_mul_([parameter.grad for parameter, _ in masked_pairs], masks)
    if clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(parameters, clip_grad_norm, foreach=True)
    optimizer.step()
    if masked_pairs:
        torch._foreach_mul_([parameter for parameter, _ in masked_pairs], masks)


def prepare_masked_training(model: nn.Module, masks: dict[str, torch.Tensor], config: TrainConfig,
                            optimizer_state: dict[str, torch.Tensor] | None, device) -> tuple:
    """The start every trainer shares: `model` on `device` in training mode with its pruned weights zeroed, and
    (optimizer from `config` holding `optimizer_state` if given, [(parameter, mask on device)], all parameters).
    Freed memory stays in the process from here on (`allocator.keep_freed_memory`)."""
    keep_freed_memory()
    model.to(device)
    model.train()
    apply_masks(model, masks)
    parameters = dict(model.named_parameters())
    masked_pairs = [(parameters[name], mask.to(device)) for name, mask in masks.items()]
    all_parameters = list(model.parameters())
    optimizer = build_optimizer(all_parameters, config)
    if optimizer_state:
        load_optimizer_tensors(optimizer, optimizer_state)
    return optimizer, masked_pairs, all_parameters


class StepBookkeeping:
    """What every trainer does around its optimizer steps, written once (the classifier, language, translation and
    agent trainers share it): metrics.jsonl started or cut back to a resumed checkpoint, rewind snapshots,
    the mean training loss between evaluations, a metrics row every `eval_every` steps and at the end, progress,
    checkpoints at evaluation points at most every `checkpoint_interval_s` seconds, and `stop_after_step` (tests'
    simulated kill). The trainer keeps its own model step, evaluation (`observe`) and checkpoint format (`save`)."""

    def __init__(self, *, start_step: int, total: int, eval_every: int, job_dir: Path | None,
                 snapshot_steps: tuple[int, ...] = (), on_snapshot: Callable | None = None,
                 on_progress: Callable[[int], None] | None = None, checkpoint_interval_s: float = 30.0,
                 stop_after_step: int | None = None, device=None, checkpoint_on_stop: bool = False) -> None:
        self.start_step, self.total, self.eval_every = start_step, total, eval_every
        self.checkpoint_on_stop = checkpoint_on_stop  # `stop_after_step` saves first (a kill just after a checkpoint)
        self.metrics_path = job_dir / METRICS_FILE if job_dir else None
        self.checkpoint_path = job_dir / CHECKPOINT_FILE if job_dir else None
        self.snapshot_steps, self.on_snapshot, self.on_progress = snapshot_steps, on_snapshot, on_progress
        self.checkpoint_interval_s, self.stop_after_step = checkpoint_interval_s, stop_after_step
        self.running_loss = torch.zeros((), device=device)
        self.steps_since_eval, self.reported_step, self.last_checkpoint_time = 0, start_step, time.monotonic()

    def begin(self, step: int, resumed: bool, model: nn.Module, optimizer) -> None:
        """Call once the trainer has loaded its checkpoint (`resumed`, at `step`) or found none."""
        if resumed:
            reset_metrics(self.metrics_path, keep_through_step=step)
            if self.on_progress:
                self.on_progress(step - self.start_step)
        elif self.metrics_path is not None:
            reset_metrics(self.metrics_path, keep_through_step=None)
        if step == self.start_step and self.start_step in self.snapshot_steps and self.on_snapshot:
            self.on_snapshot(step, model, optimizer)
        self.reported_step, self.last_checkpoint_time = step, time.monotonic()

    def after_step(self, step: int, loss: torch.Tensor | None, model: nn.Module, optimizer,
                   observe: Callable[[float], dict], save: Callable[[], None]) -> None:
        """Call after the optimizer step that made the model's step count `step`, with that step's `loss` (None
        for trainers that log something else, such as episode returns).

        At evaluation points `observe(mean training loss since the last one)` returns the metrics row, and `save()`
        writes the trainer's checkpoint when one is due."""
        if loss is not None:
            self.running_loss += loss.detach()
        self.steps_since_eval += 1
        if step in self.snapshot_steps and self.on_snapshot:
            self.on_snapshot(step, model, optimizer)
        if step % self.eval_every == 0 or step == self.total:
            row = observe(self.running_loss.item() / self.steps_since_eval)
            self.running_loss.zero_()
            self.steps_since_eval = 0
            if self.metrics_path is not None:
                append_jsonl(self.metrics_path, row)
            if self.on_progress:
                self.on_progress(step - self.reported_step)
            self.reported_step = step
            now = time.monotonic()
            if (self.checkpoint_path is not None and step < self.total
                    and now - self.last_checkpoint_time >= self.checkpoint_interval_s):
                save()
                self.last_checkpoint_time = now
        if self.stop_after_step is not None and self.stop_after_step <= step < self.total:
            if self.checkpoint_on_stop and self.checkpoint_path is not None:
                save()
            raise TrainingInterrupted(f"stopped after step {step}")

    def finish(self) -> None:
        """The job is done: its checkpoint is no longer needed."""
        if self.checkpoint_path is not None:
            self.checkpoint_path.unlink(missing_ok=True)


def train_model(
    model: nn.Module,
    data,
    config: TrainConfig,
    *,
    masks: dict[str, torch.Tensor],
    data_seed: int,
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    job_dir: Path | None = None,
    snapshot_steps: tuple[int, ...] = (),
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_step: int | None = None,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    group: DataParallelGroup | None = None,
) -> TrainResult | None:
    """Train `model` in place from `start_step` to `total_steps` (default: config.steps) under `masks`.

    `data` is in-memory `DataSplits`, or streamed data such as `ticketlab.data.image_folder.FolderData` (batches
    decoded by worker processes; see `training_batches` and `evaluate_split`).

    With `job_dir`, metrics go to metrics.jsonl and a checkpoint is written at evaluation points at most every
    `checkpoint_interval_s` seconds; a later call with the same arguments resumes from it. `snapshot_steps`
    call `on_snapshot(step, model, optimizer)` when the model has taken exactly that many steps (used to
    save rewind points). `on_progress(n)` reports n more steps done. `augment(batch, seed)` transforms each
    training batch on its device; its seed is derived from (data_seed, step) so resumed runs repeat it.

    With a data-parallel `group` (torchrun), every rank calls this with the same arguments except that only the
    leader (rank 0) passes `job_dir` and the callbacks: each rank trains on its shard of every global batch under
    DistributedDataParallel, the leader evaluates, logs and checkpoints, and followers return None.
    """
    per_epoch = iterations_per_epoch(num_train_examples(data), config.batch_size)
    total = parse_step(config.steps, per_epoch) if total_steps is None else total_steps
    eval_every = parse_step(config.eval_every, per_epoch)
    device = data_device(data)
    optimizer, masked_pairs, all_parameters = prepare_masked_training(model, masks, config, optimizer_state, device)

    step, record = start_step, EarlyStopRecord()
    books = StepBookkeeping(start_step=start_step, total=total, eval_every=eval_every, job_dir=job_dir,
                            snapshot_steps=snapshot_steps, on_snapshot=on_snapshot, on_progress=on_progress,
                            checkpoint_interval_s=checkpoint_interval_s, stop_after_step=stop_after_step,
                            device=device)
    resume = read_checkpoint_or_set_aside(books.checkpoint_path, device) if books.checkpoint_path else None
    if resume is not None:
        step, record = _load_checkpoint(resume, model, optimizer)
    books.begin(step, resume is not None, model, optimizer)
    forward = model
    if group is not None:  # every rank continues from the leader's (possibly resumed) state
        step = group.sync_state(model, optimizer, step)
        forward = group.wrap(model)

    def observe(train_loss: float) -> dict:
        if group is not None:  # the global batch's loss, and a cheap check that the ranks still agree
            train_loss = group.mean(train_loss)
            group.check_identical(model, masks, step)
            if not group.is_leader:
                return {}
        return record.observe(step, model, data, train_loss)

    # streamed data decodes only this rank's shard; in-memory batches are indexed whole and sliced below
    loader_shard = (group.rank, group.world_size) if group is not None and not isinstance(data, DataSplits) else None
    batches = training_batches(data, step, total, config.batch_size, data_seed, shard=loader_shard)
    while step < total:
        for param_group in optimizer.param_groups:
            param_group["lr"] = learning_rate_at(step, config, total, per_epoch)
        inputs, labels = next(batches)
        if augment is not None:  # the whole global batch, so each shard gets the augmentation one process gives it
            inputs = augment(inputs, derive_seed(data_seed, "augment", step))
        if group is not None and loader_shard is None:
            inputs, labels = group.shard(inputs), group.shard(labels)
        loss = F.cross_entropy(forward(inputs), labels)
        optimizer.zero_grad()  # to None: backward writes fresh gradients instead of adding them to zeros
        loss.backward()
        masked_optimizer_step(optimizer, masked_pairs, all_parameters, config.clip_grad_norm)
        step += 1
        books.after_step(step, loss, model, optimizer, observe=observe,
                         save=lambda: _save_checkpoint(books.checkpoint_path, model, optimizer, step, record))
    batches.close()  # stops streamed data's decoding workers

    if group is not None and not group.is_leader:
        return None
    if record.last_row is None or record.last_row["step"] != step:  # no training happened (start == total)
        record.observe(step, model, data, float("nan"))
    final_val_loss = record.last_row["val_loss"]
    final_test_accuracy = record.last_row.get("test_accuracy")
    if final_test_accuracy is None:
        _, final_test_accuracy = evaluate_split(model, data, "test")
    train_loss, train_accuracy = evaluate_split(model, data, "train")
    result = record.result(step, final_val_loss, final_test_accuracy, train_loss, train_accuracy)
    books.finish()
    return result


class EarlyStopRecord:
    """Tracks the minimum validation loss and the test accuracy there (test is evaluated only when needed)."""

    def __init__(self) -> None:
        self.best_step, self.best_val_loss, self.best_val_accuracy = -1, float("inf"), 0.0
        self.best_test_accuracy = 0.0
        self.last_row: dict | None = None

    def observe(self, step: int, model: nn.Module, data, train_loss: float) -> dict:
        val_loss, val_accuracy = evaluate_split(model, data, "val")
        test_accuracy = None
        if self.improves(val_loss):
            _, test_accuracy = evaluate_split(model, data, "test")
        return self.record(step, train_loss, val_loss, val_accuracy, test_accuracy)

    def improves(self, val_loss: float) -> bool:
        """Whether an evaluation with this validation loss is a new minimum (and so needs the test accuracy)."""
        return val_loss < self.best_val_loss

    def record(
        self, step: int, train_loss: float, val_loss: float, val_accuracy: float, test_accuracy: float | None
    ) -> dict:
        """Log one evaluation and return its metrics row. At a new minimum (`improves(val_loss)`), a
        `test_accuracy` of None leaves the minimum's test accuracy pending: `best_test_accuracy` is None until
        the caller sets it, and the row has no test_accuracy."""
        row = {"step": step, "train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        if self.improves(val_loss):
            self.best_step, self.best_val_loss, self.best_val_accuracy = step, val_loss, val_accuracy
            self.best_test_accuracy = test_accuracy
            if test_accuracy is not None:
                row["test_accuracy"] = test_accuracy
        self.last_row = row
        return row

    def result(
        self, final_step: int, final_val_loss: float, final_test_accuracy: float, train_loss: float,
        train_accuracy: float,
    ) -> TrainResult:
        return TrainResult(
            early_stop_iteration=self.best_step,
            early_stop_val_loss=self.best_val_loss,
            early_stop_val_accuracy=self.best_val_accuracy,
            early_stop_test_accuracy=self.best_test_accuracy,
            final_iteration=final_step,
            final_val_loss=final_val_loss,
            final_test_accuracy=final_test_accuracy,
            final_train_accuracy=train_accuracy,
            final_train_loss=train_loss,
        )

    def state(self) -> dict:
        return {
            "best_step": self.best_step,
            "best_val_loss": self.best_val_loss,
            "best_val_accuracy": self.best_val_accuracy,
            "best_test_accuracy": self.best_test_accuracy,
        }

    def load(self, state: dict) -> None:
        self.best_step, self.best_val_loss = state["best_step"], state["best_val_loss"]
        self.best_val_accuracy, self.best_test_accuracy = state["best_val_accuracy"], state["best_test_accuracy"]


def reset_metrics(path: Path, keep_through_step: int | None) -> None:
    """Start a job's metrics.jsonl: empty for a fresh run, or cut back to the rows a resumed checkpoint has seen."""
    if keep_through_step is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, [])
    else:
        write_jsonl(path, [row for row in read_jsonl(path) if row["step"] <= keep_through_step])


def write_checkpoint(
    path: Path, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, torch.Tensor], step: int,
    record: EarlyStopRecord,
) -> None:
    """Save a resumable point: weights (state_dict names), flat optimizer tensors, the step and the record."""
    tensors = {f"model.{name}": value for name, value in model_state.items()}
    tensors.update({f"optim.{name}": value for name, value in optimizer_state.items()})
    save_tensors(path, tensors, metadata={"step": str(step), "early_stop": json.dumps(record.state())})


def read_checkpoint(
    path: Path, device
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, EarlyStopRecord]:
    """Inverse of write_checkpoint: (model state, flat optimizer tensors, step, early-stop record).

    IntegrityError if the file does not parse or its tensors differ from the sha256 in its metadata."""
    tensors, metadata = load_tensors_and_metadata(path, device=device)
    model_state = {name[6:]: value for name, value in tensors.items() if name.startswith("model.")}
    optimizer_state = {name[6:]: value for name, value in tensors.items() if name.startswith("optim.")}
    record = EarlyStopRecord()
    try:
        record.load(json.loads(metadata["early_stop"]))
        step = int(metadata["step"])
    except (KeyError, TypeError, ValueError) as error:
        raise IntegrityError(f"{path}: checkpoint metadata is incomplete ({error!r})") from None
    return model_state, optimizer_state, step, record


def read_checkpoint_or_set_aside(path: Path, device):
    """`read_checkpoint(path)`, or None when there is no checkpoint or it is damaged; a damaged one is renamed
    to checkpoint.corrupt-<timestamp>.safetensors with a one-line warning, and the job restarts from its start."""
    if not path.exists():
        return None
    try:
        return read_checkpoint(path, device)
    except IntegrityError as error:
        set_aside(path, f"{error}; the job restarts from its start")
        return None


def save_checkpoint_parts(path: Path, parts: dict[str, dict[str, torch.Tensor]], metadata: dict[str, str]) -> None:
    """Save named groups of tensors ("model", "optim", ...) as one safetensors checkpoint: each tensor under
    "<group>.<name>", with `metadata` (strings). The trainers of every task write their checkpoints with it."""
    tensors = {f"{group}.{name}": value for group, members in parts.items() for name, value in members.items()}
    save_tensors(path, tensors, metadata=metadata)


def read_checkpoint_parts(path: Path, device, json_keys: tuple[str, ...] = ()) -> tuple[dict, dict] | None:
    """Inverse of save_checkpoint_parts: ({group: {name: tensor}}, metadata with `json_keys` parsed and "step" an
    int), or None when there is no checkpoint or it is damaged (set aside with a one-line warning; the job restarts
    from its start)."""
    if not path.exists():
        return None
    try:
        tensors, metadata = load_tensors_and_metadata(path, device=device)
        metadata = dict(metadata, step=int(metadata["step"]), **{key: json.loads(metadata[key]) for key in json_keys})
    except (IntegrityError, KeyError, TypeError, ValueError) as error:
        set_aside(path, f"{error}; the job restarts from its start")
        return None
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        group, _, member = name.partition(".")
        parts.setdefault(group, {})[member] = value
    return parts, metadata


def _save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, record: EarlyStopRecord) -> None:
    write_checkpoint(path, model.state_dict(), optimizer_tensors(optimizer), step, record)


def _load_checkpoint(checkpoint, model: nn.Module, optimizer) -> tuple[int, EarlyStopRecord]:
    model_state, optimizer_state, step, record = checkpoint
    model.load_state_dict(model_state)
    load_optimizer_tensors(optimizer, optimizer_state)
    return step, record
