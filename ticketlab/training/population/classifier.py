"""A classifier population: the engine's `RowStack` plus what a classifier adds — each member's batches from its
own data order, the batched forward/backward (`classifier_nets`), whole-split evaluation, the weights at each
member's validation minimum, and checkpoints in `train_model`'s format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch.nn import functional as F

from ticketlab.config import TrainConfig, parse_step
from ticketlab.seeds import derive_seed
from ticketlab.training.batches import epoch_order, iterations_per_epoch
from ticketlab.training.kernel_choice import population_sparse_layer_names
from ticketlab.training.loop import EarlyStopRecord, write_checkpoint
from ticketlab.training.population.classifier_nets import FunctionalNet, LinearReluNet
from ticketlab.training.population.member import MemberProgress, PopulationMember
from ticketlab.training.population.stack import RowStack
from ticketlab.training.population.stackable import functional_vectorizable, mlp_linears


class TensorSplits(Protocol):
    """What a classifier population reads of its data: the three splits as in-memory tensors (the engine asks for
    these fields, not for a data class of the tasks)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(eq=False)
class ClassifierProgress(MemberProgress):
    """A classifier member's bookkeeping: its early-stop record, loss steps since the last evaluation, the epoch
    its data order is drawn for, and whether a validation minimum awaits its test accuracy."""

    steps_since_eval: int = 0
    order_epoch: int = -1
    test_pending: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.record is None:
            self.record = EarlyStopRecord()


class ClassifierPopulation:
    """Stacked weights, gradients, optimizer state and masks of the classifier members still training."""

    def __init__(self, members: Sequence[PopulationMember], data: TensorSplits, config: TrainConfig,
                 keep_best: bool = False) -> None:
        template = members[0].model
        self.keep_best = keep_best
        linears = mlp_linears(template)
        # MLPs run a hand-written batched backward; conv nets run their own forward under vmap(grad)
        if linears is None and not functional_vectorizable(template):
            raise ValueError(f"{type(template).__name__} cannot be trained in a population; use train_model")
        self.config = config
        self.device = data.x_train.device
        self.num_train = len(data.x_train)
        self.per_epoch = iterations_per_epoch(self.num_train, config.batch_size)
        default_total = parse_step(config.steps, self.per_epoch)
        # Members that share a start and an optimizer history stay in lock step; keeping them adjacent lets the
        # optimizer treat each such run as one slice.
        order = sorted(
            range(len(members)),
            key=lambda i: (members[i].start_step, members[i].optimizer_state is not None, members[i].total_steps or 0),
        )
        progress = [ClassifierProgress(members[i], i, default_total if members[i].total_steps is None
                                       else members[i].total_steps) for i in order]
        states = [{name: value.detach() for name, value in p.member.model.state_dict().items()} for p in progress]
        self.stack = RowStack(template, progress, states, config, self.device, zero_pruned_state=True)
        self.net = FunctionalNet(template, self.stack) if linears is None else LinearReluNet(template, linears,
                                                                                              self.stack)
        if linears is not None and config.kernels != "dense":  # conv nets are not stacked with sparse kernels
            self.net.use_sparse(self._sparse_weight_indices(template, config))
        count = len(progress)
        self.running_loss = torch.zeros(count, device=self.device)
        self.orders = torch.empty((count, self.num_train), dtype=torch.long, device=self.device)
        # weights at each member's validation minimum, whose test accuracy is evaluated only if it is reported
        self.best_params = [torch.empty_like(param) for param in self.stack.params] if keep_best else None
        self.best_buffers = [torch.empty_like(buffer) for buffer in self.stack.buffers] if keep_best else None

    def _sparse_weight_indices(self, template, config: TrainConfig) -> list[int]:
        """The stack's parameter indices of the layers `config.kernels` runs on block-diagonal sparse kernels,
        recorded in (or, on resume, read from) each member's kernels.json."""
        index_of = {name: index for index, name in enumerate(self.stack.names)}
        stacked = {name: self.stack.masks[index] for name, index in index_of.items()
                   if self.stack.masks[index] is not None}
        names = population_sparse_layer_names(template, self.progress[0].member.masks, stacked, config.kernels,
                                              config.batch_size, [p.member.job_dir for p in self.progress])
        return [index_of[f"{name}.weight"] for name in names]

    @property
    def progress(self) -> list[ClassifierProgress]:
        return self.stack.members

    def keep(self, rows: list[int]) -> None:
        """Drop every member whose row is not in `rows` (finished members leave the population)."""
        select = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.stack.keep(rows)
        self.running_loss = self.running_loss.index_select(0, select)
        self.orders = self.orders.index_select(0, select)
        if self.best_params is not None:
            self.best_params = [param.index_select(0, select) for param in self.best_params]
            self.best_buffers = [buffer.index_select(0, select) for buffer in self.best_buffers]

    # --- checkpoints and the weights at the minimum ---

    def restore_checkpoint(self, row: int, checkpoint) -> None:
        """Load member `row` from `checkpoint`, a `read_checkpoint` result (with the mask in force, for a member
        whose mask changes while it trains)."""
        model_state, optimizer_state, step, record, mask = checkpoint
        progress = self.progress[row]
        if progress.member.mask_schedule is not None:  # first: `restore` zeroes the state pruned by the mask in force
            self.stack.install_mask(row, mask)
        self.stack.restore(row, model_state, optimizer_state)
        progress.step, progress.record, progress.reported_step = step, record, step

    def save_checkpoint(self, row: int) -> None:
        progress = self.progress[row]
        mask = self.stack.member_mask(row) if progress.member.mask_schedule is not None else None
        write_checkpoint(progress.checkpoint_path, self.stack.member_state(row),
                         self.stack.member_optimizer_tensors(row), progress.step, progress.record, mask)

    def remember_best(self, rows: list[int]) -> None:
        select = torch.tensor(rows, dtype=torch.long, device=self.device)
        for best, param in zip(self.best_params + self.best_buffers, self.stack.params + self.stack.buffers):
            best.index_copy_(0, select, param.index_select(0, select))
        for row in rows:
            self.progress[row].test_pending = True

    def resolve_pending_tests(self, rows: list[int], data: TensorSplits) -> None:
        """Evaluate the test accuracy of the validation minima still pending among `rows`."""
        pending = [row for row in rows if self.progress[row].test_pending]
        if not pending:
            return
        _, accuracies = self.evaluate(pending, data.x_test, data.y_test, with_loss=False, params=self.best_params,
                                      buffers=self.best_buffers)
        for row, accuracy in zip(pending, accuracies):
            self.progress[row].record.best_test_accuracy = accuracy
            self.progress[row].test_pending = False

    # --- training ---

    def batch(self, data: TensorSplits, augment) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [K, B, features] and labels [K, B]: member k's batch at its own step, from its own data order."""
        batch_size = self.config.batch_size
        positions = []
        for row, progress in enumerate(self.progress):
            epoch, position = divmod(progress.step, self.per_epoch)
            if progress.order_epoch != epoch:
                self.orders[row] = epoch_order(self.num_train, progress.member.data_seed, epoch).to(self.device)
                progress.order_epoch = epoch
            positions.append(position)
        if all(position == positions[0] for position in positions):
            start = positions[0] * batch_size
            indices = self.orders[:, start : start + batch_size]
        else:
            indices = torch.stack([self.orders[row, p * batch_size : (p + 1) * batch_size]
                                   for row, p in enumerate(positions)])
        count = len(self.progress)
        labels = data.y_train.index_select(0, indices.reshape(-1)).view(count, batch_size)
        if augment is None:
            inputs = self.net.flat_inputs(data.x_train).index_select(0, indices.reshape(-1))
            inputs = inputs.view(count, batch_size, *inputs.shape[1:])
        else:
            inputs = torch.stack([
                self.net.flat_inputs(augment(data.x_train[indices[row]],
                                             derive_seed(progress.member.data_seed, "augment", progress.step)))
                for row, progress in enumerate(self.progress)
            ])
        return inputs, labels

    def update_masks(self) -> None:
        """Ask the mask schedule of each member due (`MemberProgress.mask_update_due`) for its mask before its
        next step, with its weights written out to its own model (RigL takes gradients of it), and install an
        answer as the single-job engine does."""
        for row, progress in enumerate(self.progress):
            if progress.mask_update_due():
                with torch.enable_grad():
                    changed = progress.member.mask_schedule(progress.step, self.stack.write_back(row),
                                                            dict(progress.member.masks))
                if changed is not None:
                    self.stack.install_mask(row, changed)

    def train_step(self, data: TensorSplits, augment) -> None:
        """One batched step of every member: its batch, forward and backward, masked gradients and optimizer
        update; then every member's optimizer step counts advance."""
        inputs, labels = self.batch(data, augment)
        self.running_loss += self.net.loss_and_gradients(self.stack, inputs, labels)
        learning_rates = self.stack.learning_rates(self.per_epoch)
        self.stack.mask_gradients()
        self.stack.step(learning_rates)

    # --- evaluation ---

    def evaluate(self, rows: list[int], inputs: torch.Tensor, labels: torch.Tensor, with_loss: bool = True,
                 params: list[torch.Tensor] | None = None, buffers: list[torch.Tensor] | None = None):
        """Mean cross-entropy (None unless `with_loss`) and accuracy of the members in `rows` on a whole split,
        with their current weights or the stacked `params` (and BatchNorm `buffers`) given; in eval mode."""
        params = self.stack.params if params is None else params
        buffers = self.stack.buffers if buffers is None else buffers
        masks = self.stack.masks
        if rows != list(range(len(self.progress))):
            select = torch.tensor(rows, dtype=torch.long, device=self.device)
            params = [param.index_select(0, select) for param in params]
            buffers = [buffer.index_select(0, select) for buffer in buffers]
            masks = [None if mask is None else mask.index_select(0, select) for mask in masks]
        layouts = self.net.eval_layouts(masks)
        count = len(rows)
        chunk = self.net.eval_chunk(params, count, inputs)
        total_loss = torch.zeros(count, dtype=torch.float64, device=self.device)
        correct = torch.zeros(count, dtype=torch.int64, device=self.device)
        flat = self.net.flat_inputs(inputs)
        for start in range(0, len(flat), chunk):
            logits = self.net.logits(params, buffers, flat[start : start + chunk], layouts)
            chunk_labels = labels[start : start + chunk]
            if with_loss:  # per member, as evaluate() sums it, so the reported losses round the same way
                for row in range(count):
                    total_loss[row] += F.cross_entropy(logits[row], chunk_labels, reduction="sum").double()
            correct += (logits.argmax(dim=2) == chunk_labels).sum(dim=1)
        accuracy = (correct.double() / len(flat)).tolist()
        return ((total_loss / len(flat)).tolist() if with_loss else None), accuracy
