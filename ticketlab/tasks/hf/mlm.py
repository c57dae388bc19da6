"""The masked-language-modelling task: a pre-trained transformer (any `AutoModelForMaskedLM` in mlm.model_dir)
trained on a local text corpus with BERT's masking, scored by test perplexity over the masked tokens (Chen et al.
2020 find MLM tickets that transfer to every GLUE task). θ0 is the pre-trained network; a head the checkpoint lacks
is drawn from the trial seed."""

from __future__ import annotations

from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.tasks.base import Task
from ticketlab.tasks.hf.evaluate import evaluate_mlm
from ticketlab.tasks.hf.pretrained import (
    initialize_new_head,
    load_pretrained,
    load_tokenizer,
    model_directory,
    seeded,
)
from ticketlab.tasks.hf.record import bind_inputs
from ticketlab.tasks.hf.task_fields import shared_task_fields
from ticketlab.tasks.hf.tensors import GROUPS_ATTRIBUTE
from ticketlab.tasks.hf.text_data import load_text
from ticketlab.tasks.hf.train import make_trainer, mlm_batch
from ticketlab.tasks.metrics import METRICS

NEW_PARAMETERS = "ticketlab_new_parameters"


def load_mlm_data(config: ExperimentConfig):
    settings = config.mlm
    path = model_directory(settings, "mlm")
    data = load_text(config.data, load_tokenizer(path, "mlm"), settings.max_length, settings.mask_probability)
    data.origin.update(model_dir=str(path), data_dir=config.data.data_dir)
    return data


def bind_mlm_run(data, run_dir):
    """The data, once RUN_DIR/corpus.json records (first start) or matches the fingerprint of its token blocks
    and model directory."""
    summary = f"{len(data.train)} train / {len(data.val)} validation / {len(data.test)} test blocks"
    return bind_inputs(data, run_dir, {"train": data.train, "val": data.val, "test": data.test}, summary)


def build_mlm_model(config: ExperimentConfig, data) -> nn.Module:
    path = model_directory(config.mlm, "mlm")
    with seeded(0):
        model, new = load_pretrained(path, "AutoModelForMaskedLM", "mlm.model_dir")
    if model.get_input_embeddings().num_embeddings < data.vocab_size:
        raise ConfigError(f"mlm.model_dir {str(path)!r}: the model's {model.get_input_embeddings().num_embeddings} "
                          f"token embeddings are fewer than its tokenizer's {data.vocab_size} tokens")
    setattr(model, GROUPS_ATTRIBUTE, config.mlm.groups())
    setattr(model, NEW_PARAMETERS, new)
    return model


def score_losses(model, data, config, seed: int, batches: int, first_batch: int = 0, temperature: float = 1.0):
    """The MLM loss on `batches` training batches (and masks) of data seed `seed` from step `first_batch` on, the
    logits divided by `temperature` (GraSP's), for SNIP, GraSP and RigL."""
    import torch.nn.functional as F

    for index in range(first_batch, first_batch + batches):
        features, labels = mlm_batch(data, index, config.batch_size, seed)
        with seeded(derive_seed(seed, "score_dropout", index), labels.device):
            output = model(**features, labels=labels)
        if temperature == 1.0:
            yield output.loss
        else:
            logits = output.logits / temperature
            yield F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def first_token_ids(data, split: str, count: int):
    """The token ids of the first `count` examples of `split`."""
    part = {"train": data.train, "val": data.val, "test": data.test}[split]
    return part[:count]


TASK = Task(
    name="mlm",
    **shared_task_fields("mlm"),
    load_experiment_data=load_mlm_data,
    bind_run=bind_mlm_run,
    build_model=build_mlm_model,
    initialize=lambda model, config, seed: initialize_new_head(model, getattr(model, NEW_PARAMETERS, frozenset()),
                                                               seed),
    train=make_trainer(mlm_batch, evaluate_mlm, lambda data: "perplexity"),
    evaluate=evaluate_mlm,
    metric=lambda config: METRICS["perplexity"],
    score_losses=score_losses,
    # token ids alone (attention everywhere): what `export` and `cost` run an export's network on
    example_inputs=first_token_ids,
)
