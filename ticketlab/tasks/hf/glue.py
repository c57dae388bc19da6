"""The GLUE task: a pre-trained transformer (any `AutoModelForSequenceClassification` in glue.model_dir) fine-tuned
on GLUE-layout TSV files (data.name: the GLUE task; data.data_dir: its train.tsv and dev.tsv), scored by GLUE's
metric for the task. θ0 is the pre-trained network; a head the checkpoint lacks is drawn from the trial seed."""

from __future__ import annotations

import json

from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.tasks.base import Task
from ticketlab.tasks.hf.evaluate import evaluate_glue
from ticketlab.tasks.hf.glue_data import GLUE_LAYOUTS, load_glue
from ticketlab.tasks.hf.pretrained import (
    initialize_new_head,
    load_pretrained,
    load_tokenizer,
    model_directory,
    saved_num_labels,
    seeded,
)
from ticketlab.tasks.hf.record import bind_inputs
from ticketlab.tasks.hf.task_fields import shared_task_fields
from ticketlab.tasks.hf.tensors import GROUPS_ATTRIBUTE
from ticketlab.tasks.hf.train import glue_batch, make_trainer
from ticketlab.tasks.metrics import METRICS, Metric

NEW_PARAMETERS = "ticketlab_new_parameters"  # the names the checkpoint lacked, set by build_model


def check_head(path, task: str) -> None:
    """ConfigError when the directory's model has a sequence-classification head of another size than `task`'s."""
    saved = json.loads((path / "config.json").read_text())
    architectures = saved.get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        return  # a pre-trained encoder (or MLM) checkpoint: the head is new
    labels = saved_num_labels(saved) or 2
    wanted = GLUE_LAYOUTS[task].num_labels
    if labels != wanted:
        raise ConfigError(f"glue.model_dir {str(path)!r} holds a {architectures[0]} with {labels} labels; GLUE task "
                          f"{task} needs {wanted} ({'a regression score' if wanted == 1 else 'classes'}): use a "
                          "pre-trained model without a classification head, or one fine-tuned for this task")


def load_glue_data(config: ExperimentConfig):
    settings = config.glue
    path = model_directory(settings, "glue")
    check_head(path, config.data.name)
    data = load_glue(config.data.name, config.data, load_tokenizer(path, "glue"), settings.max_length)
    data.origin.update(model_dir=str(path), data_dir=config.data.data_dir)
    return data


def bind_glue_run(data, run_dir):
    """The data, once RUN_DIR/corpus.json records (first start) or matches the fingerprint of its tokens, labels
    and model directory."""
    tensors = {f"{split}.{name}": value for split in ("train", "val", "test")
               for name, value in getattr(data, split).features.items()}
    tensors.update({f"{split}.labels": getattr(data, split).labels for split in ("train", "val", "test")})
    summary = f"{data.task}: {len(data.train)} train / {len(data.val)} validation / {len(data.test)} dev examples"
    return bind_inputs(data, run_dir, tensors, summary)


def build_glue_model(config: ExperimentConfig, data) -> nn.Module:
    """The directory's model with a head of the task's size (θ_pre; `initialize` draws the new head)."""
    path = model_directory(config.glue, "glue")
    check_head(path, config.data.name)
    with seeded(0):  # transformers draws the new head from the global generator; `initialize` redraws it anyway
        model, new = load_pretrained(path, "AutoModelForSequenceClassification", "glue.model_dir",
                                      num_labels=data.num_labels)
    setattr(model, GROUPS_ATTRIBUTE, config.glue.groups())
    setattr(model, NEW_PARAMETERS, new)
    return model


def initialize_glue_model(model: nn.Module, config: ExperimentConfig, seed: int) -> nn.Module:
    """θ0: the pre-trained weights as `build_model` loaded them, the new head drawn from `seed`."""
    return initialize_new_head(model, getattr(model, NEW_PARAMETERS, frozenset()), seed)


def glue_metric(config: ExperimentConfig) -> Metric:
    return METRICS[GLUE_LAYOUTS[config.data.name].metric]


def score_losses(model, data, config, seed: int, batches: int, first_batch: int = 0, temperature: float = 1.0):
    """The model's loss on `batches` training batches of data seed `seed` (the batches training draws at steps
    first_batch, first_batch + 1, ...), dropout seeded per batch, for SNIP, GraSP and RigL. A classifier's logits
    are divided by `temperature` (GraSP's); a regression head (STS-B) has no logits to temper and keeps its loss."""
    import torch.nn.functional as F

    for index in range(first_batch, first_batch + batches):
        features, labels = glue_batch(data, index, config.batch_size, seed)
        with seeded(derive_seed(seed, "score_dropout", index), labels.device):
            output = model(**features, labels=labels)
        if temperature == 1.0 or output.logits.shape[-1] == 1:
            yield output.loss
        else:
            yield F.cross_entropy(output.logits / temperature, labels)


def first_token_ids(data, split: str, count: int):
    """The token ids of the first `count` examples of `split`."""
    part = {"train": data.train, "val": data.val, "test": data.test}[split]
    return part.features["input_ids"][:count]


TASK = Task(
    name="glue",
    **shared_task_fields("glue"),
    load_experiment_data=load_glue_data,
    bind_run=bind_glue_run,
    build_model=build_glue_model,
    initialize=initialize_glue_model,
    train=make_trainer(glue_batch, evaluate_glue, lambda data: data.layout.metric),
    evaluate=evaluate_glue,
    metric=glue_metric,
    score_losses=score_losses,
    # token ids alone (attention everywhere): what `export` and `cost` run an export's network on
    example_inputs=first_token_ids,
    # a ticket of another GLUE task, or (Chen et al. 2020's universal subnetwork) of masked-language modelling
    transfers=True,
    tickets_from=("mlm",),
)
