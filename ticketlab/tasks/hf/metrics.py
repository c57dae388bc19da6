"""GLUE's metrics (Wang et al. 2019), computed from predictions and labels held as tensors: accuracy (SST-2, QNLI,
RTE), F1 of the positive class (MRPC, QQP; accuracy beside it), Matthews correlation (CoLA), Pearson and Spearman
correlation (STS-B). Each is higher-is-better."""

from __future__ import annotations

import math

import torch


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).double().mean())


def f1(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 of class 1 (0 when no example is predicted or labelled 1, as scikit-learn's zero_division=0)."""
    true_positive = float(((predictions == 1) & (labels == 1)).sum())
    predicted, actual = float((predictions == 1).sum()), float((labels == 1).sum())
    return 2 * true_positive / (predicted + actual) if predicted + actual > 0 else 0.0


def matthews(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Matthews correlation of binary predictions (0 where a row or column of the confusion matrix is empty)."""
    tp = float(((predictions == 1) & (labels == 1)).sum())
    tn = float(((predictions == 0) & (labels == 0)).sum())
    fp = float(((predictions == 1) & (labels == 0)).sum())
    fn = float(((predictions == 0) & (labels == 1)).sum())
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator > 0 else 0.0


def pearson(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    x, y = predictions.double() - predictions.double().mean(), labels.double() - labels.double().mean()
    denominator = float(x.norm() * y.norm())
    return float((x * y).sum()) / denominator if denominator > 0 else 0.0


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks from 1 with ties given their mean rank (as scipy.stats.rankdata)."""
    values = values.double()
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64, device=values.device)
    unique, inverse = torch.unique(values, return_inverse=True)
    sums = torch.zeros(len(unique), dtype=torch.float64, device=values.device).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(unique), dtype=torch.float64, device=values.device).index_add_(
        0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


def spearman(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return pearson(_ranks(predictions), _ranks(labels))


def glue_scores(metric: str, outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The task's primary metric (`metric`) and GLUE's companion numbers, from the model's logits `outputs`."""
    if metric == "pearson":
        scores = outputs.squeeze(-1).float().cpu()
        return {"pearson": pearson(scores, labels.cpu()), "spearman": spearman(scores, labels.cpu())}
    predictions = outputs.argmax(dim=-1).cpu()
    labels = labels.cpu()
    values = {"accuracy": accuracy(predictions, labels)}
    if metric == "f1":
        values = {"f1": f1(predictions, labels), **values}
    elif metric == "matthews":
        values = {"matthews": matthews(predictions, labels), **values}
    return values
