"""A classifier's mean cross-entropy loss and accuracy on a split, in bounded batches and in eval mode."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.training.batches import held_in_memory

EVAL_BATCH = 1024  # bounds activation memory of conv nets (a ResNet-20 at 8192 images needs ~0.5 GB a layer)
EVAL_INPUT_FLOATS = EVAL_BATCH * 1024  # inputs per evaluation batch: larger examples get smaller batches


def eval_batch_size(example_floats: int) -> int:
    """Examples per evaluation batch: EVAL_BATCH for inputs up to 1,024 floats (MNIST, MNIST-1D), fewer for larger
    ones (341 CIFAR images), so a conv net's activations stay bounded: evaluating ResNet-20 (width 16) on 1,024
    CIFAR images at once added 340 MiB to peak memory."""
    return max(1, min(EVAL_BATCH, EVAL_INPUT_FLOATS // max(1, example_floats)))


def evaluate_split(model: nn.Module, data, split: str) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on split "train", "val" or "test" of in-memory or streamed data."""
    if held_in_memory(data):
        inputs, labels = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                          "test": (data.x_test, data.y_test)}[split]
        return evaluate(model, inputs, labels)
    return evaluate_batches(model, data.evaluate_batches(split))


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
