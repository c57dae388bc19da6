"""Linear mode connectivity (Frankle et al. 2020): evaluate networks on the segment between two weight vectors.

Works on plain modules and state dicts. The point at ``alpha`` is ``lerp(a, b, alpha)`` = (1 - alpha) a + alpha b,
computed so that alpha = 0 gives `a` and alpha = 1 gives `b` bit for bit, and identical endpoints give that
network at every alpha. Evaluating a point never takes a training step; a model with BatchNorm gets its running
statistics recomputed from training inputs at every point (endpoints included, so all points are comparable).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.training.evaluation import evaluate

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
DEFAULT_POINTS = 30


@dataclass(frozen=True)
class PathEvaluation:
    """Loss and error along the path; errors are fractions in [0, 1], one entry per alpha."""

    alphas: tuple[float, ...]
    losses: dict[str, tuple[float, ...]]  # split name -> mean cross-entropy at each alpha
    errors: dict[str, tuple[float, ...]]  # split name -> 1 - accuracy at each alpha
    batchnorm_recomputed: bool = False
    barriers: dict[str, float] = field(init=False)  # split name -> error barrier

    def __post_init__(self) -> None:
        object.__setattr__(self, "barriers", {split: barrier(values) for split, values in self.errors.items()})

    def loss_barriers(self) -> dict[str, float]:
        return {split: barrier(values) for split, values in self.losses.items()}

    def rows(self) -> list[dict]:
        """One dict per alpha: alpha, then `{split}_error` and `{split}_loss` for every split."""
        rows = []
        for index, alpha in enumerate(self.alphas):
            row = {"alpha": alpha}
            for split in self.errors:
                row[f"{split}_error"] = self.errors[split][index]
                row[f"{split}_loss"] = self.losses[split][index]
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        return {
            "alphas": list(self.alphas),
            "losses": {split: list(values) for split, values in self.losses.items()},
            "errors": {split: list(values) for split, values in self.errors.items()},
            "batchnorm_recomputed": self.batchnorm_recomputed,
        }

    @classmethod
    def from_dict(cls, record: dict) -> "PathEvaluation":
        return cls(
            alphas=tuple(record["alphas"]),
            losses={split: tuple(values) for split, values in record["losses"].items()},
            errors={split: tuple(values) for split, values in record["errors"].items()},
            batchnorm_recomputed=record["batchnorm_recomputed"],
        )


def barrier(values: Sequence[float]) -> float:
    """Barrier height of values along a path: max over the path minus the mean of the two end points.

    With errors this is Frankle et al.'s (2020) error barrier (instability); 0 when no point is worse than the
    endpoints' mean. The first and last values are the endpoints (alpha = 0 and 1).
    """
    if len(values) < 2:
        raise ConfigError(f"a path needs at least 2 points to have a barrier, got {len(values)}")
    return max(values) - (values[0] + values[-1]) / 2.0


def interpolation_alphas(points: int = DEFAULT_POINTS) -> tuple[float, ...]:
    """`points` evenly spaced coefficients from 0 to 1, both ends included."""
    if points < 2:
        raise ConfigError(f"points {points} must be >= 2 (the two endpoints at least)")
    return tuple(index / (points - 1) for index in range(points))


def interpolate_states(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """The state dict (1 - alpha) * a + alpha * b; integer buffers (BatchNorm's batch counters) come from `a`."""
    if set(state_a) != set(state_b):
        missing = sorted(set(state_a) ^ set(state_b))
        raise ConfigError(f"state dicts hold different tensors, e.g. {missing[0]!r}")
    mixed = {}
    for name, value_a in state_a.items():
        value_b = state_b[name]
        if value_a.shape != value_b.shape:
            raise ConfigError(f"{name} has shape {tuple(value_a.shape)} in one state, "
                              f"{tuple(value_b.shape)} in the other")
        if value_a.is_floating_point():
            mixed[name] = torch.lerp(value_a, value_b.to(value_a.dtype), float(alpha))
        else:
            mixed[name] = value_a.clone()
    return mixed


def has_batchnorm(model: nn.Module) -> bool:
    """True when the model has BatchNorm layers that keep running statistics."""
    return any(isinstance(module, BATCHNORM_TYPES) and module.track_running_stats for module in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1000) -> None:
    """Replace every BatchNorm layer's running mean/variance by the statistics of `inputs`, in place.

    The inputs pass through the model in chunks of `batch_size` with BatchNorm in training mode (each chunk is
    normalized by its own statistics, as in training) and everything else in eval mode; each layer's running
    mean and unbiased variance become those of all its inputs pooled over the chunks (exact, not a moving
    average). No parameter changes; the model keeps the train/eval mode it had.
    """
    layers = [m for m in model.modules() if isinstance(m, BATCHNORM_TYPES) and m.track_running_stats]
    if not layers:
        return
    if batch_size < 2:
        raise ConfigError(f"batchnorm batch size {batch_size} must be >= 2")
    sums: dict[nn.Module, list] = {layer: [0, 0.0, 0.0] for layer in layers}  # count, sum, sum of squares

    def record(layer, args):
        values = args[0].detach().transpose(0, 1).reshape(args[0].shape[1], -1).double()  # channels x samples
        total = sums[layer]
        total[0] += values.shape[1]
        total[1] = total[1] + values.sum(dim=1)
        total[2] = total[2] + (values * values).sum(dim=1)

    was_training = model.training
    batch_counts = [None if layer.num_batches_tracked is None else layer.num_batches_tracked.clone()
                    for layer in layers]
    model.eval()
    handles = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        for layer in layers:
            layer.train()
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            if len(chunk) < 2 and start > 0:  # a single leftover example cannot be batch-normalized; skip it
                continue
            model(chunk)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for layer, batches in zip(layers, batch_counts):
        if batches is not None:  # the pass above counted its chunks; the statistics replace, not extend, training's
            layer.num_batches_tracked.copy_(batches)
        count, total, squares = sums[layer]
        if count < 2:
            raise ConfigError("recomputing BatchNorm statistics needs at least 2 input values per channel")
        mean = total / count
        variance = (squares - count * mean * mean).clamp_min(0.0) / (count - 1)
        layer.running_mean.copy_(mean.to(layer.running_mean.dtype))
        layer.running_var.copy_(variance.to(layer.running_var.dtype))


def evaluate_path(
    model: nn.Module,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    points: int = DEFAULT_POINTS,
    batchnorm_inputs: torch.Tensor | None = None,
    batchnorm_batch_size: int = 1000,
) -> PathEvaluation:
    """Loss and error of every network on the segment from `state_a` to `state_b`, for each split.

    `model` only supplies the architecture (a copy is evaluated; the model itself is untouched). `splits` maps a
    name ('train', 'test') to (inputs, labels) of a classifier; the error is 1 - accuracy. A model with BatchNorm
    needs `batchnorm_inputs` (training inputs): statistics are recomputed from them at every point (see
    `recompute_batchnorm`).
    """
    def loss_and_error(network: nn.Module, split: str) -> tuple[float, float]:
        loss, accuracy = evaluate(network, *splits[split])
        return loss, 1.0 - accuracy

    device = next(iter(splits.values()))[0].device if splits else torch.device("cpu")
    return evaluate_path_with(model, state_a, state_b, loss_and_error, tuple(splits), points=points,
                              batchnorm_inputs=batchnorm_inputs, batchnorm_batch_size=batchnorm_batch_size,
                              device=device)


def evaluate_path_with(
    model: nn.Module,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    loss_and_error: Callable[[nn.Module, str], tuple[float, float]],
    split_names: Sequence[str],
    *,
    points: int = DEFAULT_POINTS,
    batchnorm_inputs: torch.Tensor | None = None,
    batchnorm_batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> PathEvaluation:
    """`evaluate_path` for any task: `loss_and_error(network, split)` measures one interpolated network."""
    alphas = interpolation_alphas(points)
    network = copy.deepcopy(model)
    recompute = has_batchnorm(network)
    if recompute and batchnorm_inputs is None:
        raise ConfigError("the model has BatchNorm: pass batchnorm_inputs (training inputs) to recompute statistics")
    network.to(device)
    losses: dict[str, list[float]] = {split: [] for split in split_names}
    errors: dict[str, list[float]] = {split: [] for split in split_names}
    for alpha in alphas:
        network.load_state_dict(interpolate_states(state_a, state_b, alpha))
        if recompute:
            recompute_batchnorm(network, batchnorm_inputs.to(device), batchnorm_batch_size)
        for split in split_names:
            loss, error = loss_and_error(network, split)
            losses[split].append(loss)
            errors[split].append(error)
    return PathEvaluation(
        alphas=alphas,
        losses={split: tuple(values) for split, values in losses.items()},
        errors={split: tuple(values) for split, values in errors.items()},
        batchnorm_recomputed=recompute,
    )
