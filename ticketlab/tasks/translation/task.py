"""The translation task: an encoder-decoder Transformer on a parallel corpus, scored by test BLEU."""

from __future__ import annotations

from ticketlab.tasks.base import Task
from ticketlab.tasks.metrics import METRICS
from ticketlab.tasks.translation.batches import steps_per_epoch
from ticketlab.tasks.translation.data import bind_run, load_translation_data
from ticketlab.tasks.translation.evaluate import evaluate
from ticketlab.tasks.translation.model import build_translation_model, initialize_translation_model
from ticketlab.tasks.translation.train import train_translation_model

TASK = Task(
    name="translation",
    load_data=load_translation_data,
    build_model=lambda config, data: build_translation_model(config, data.vocab_size),
    initialize=lambda model, config, seed: initialize_translation_model(model, config.model.init, seed),
    train=train_translation_model,
    evaluate=evaluate,
    metric=lambda config: METRICS["bleu"],
    steps_per_epoch=steps_per_epoch,
    stackable=lambda model, device, population: False,  # one job at a time (no stacked Transformer populations)
    bind_run=bind_run,
    transfers=False,  # the vocabulary is the data's: another corpus is another architecture
    labelled_examples=None,  # sentence pairs, not (input, label) tensors: stability evaluates through `evaluate`
)
