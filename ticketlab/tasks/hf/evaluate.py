"""Evaluation of the Hugging Face tasks on a split, in eval mode and bounded batches: GLUE's loss (cross-entropy,
or mean squared error for STS-B) and metrics; MLM's loss per predicted token, masked-token accuracy and perplexity
under the split's fixed masks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.seeds import derive_seed
from ticketlab.tasks.hf.glue_data import trim
from ticketlab.tasks.hf.metrics import glue_scores
from ticketlab.tasks.hf.text_data import IGNORED, evaluation_seed, mask_tokens

EVAL_BATCH = 128


@torch.no_grad()
def evaluate_glue(model: nn.Module, data, split: str) -> dict[str, float]:
    """{"loss", the task's metric and companions (accuracy beside F1 / Matthews, spearman beside pearson)}."""
    part = {"train": data.train, "val": data.val, "test": data.test}[split]
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(part), EVAL_BATCH):
        features = trim({name: value[start:start + EVAL_BATCH] for name, value in part.features.items()})
        outputs.append(model(**features).logits.float())
    model.train(was_training)
    logits = torch.cat(outputs)
    if data.layout.labels is None:
        loss = F.mse_loss(logits.squeeze(-1), part.labels).item()
    else:
        loss = F.cross_entropy(logits, part.labels).item()
    return {"loss": loss, **glue_scores(data.layout.metric, logits, part.labels)}


@torch.no_grad()
def evaluate_mlm(model: nn.Module, data, split: str) -> dict[str, float]:
    """{"loss": nats per predicted token, "perplexity", "masked_accuracy"} under the split's fixed masks."""
    blocks = {"train": data.train, "val": data.val, "test": data.test}[split]
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for index, start in enumerate(range(0, len(blocks), EVAL_BATCH)):
        inputs, labels = mask_tokens(blocks[start:start + EVAL_BATCH], data,
                                     derive_seed(evaluation_seed(split), index))
        logits = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits
        chosen = labels != IGNORED
        total += F.cross_entropy(logits[chosen].float(), labels[chosen], reduction="sum").double().item()
        correct += int((logits[chosen].argmax(dim=-1) == labels[chosen]).sum())
        count += int(chosen.sum())
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "masked_accuracy": correct / max(count, 1)}
