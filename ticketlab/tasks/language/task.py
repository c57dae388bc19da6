"""The language-modelling task: an LSTM language model on word-level (perplexity) or character-level
(bits per character) corpora, as the lottery engine sees it."""

from __future__ import annotations

from ticketlab.config import ExperimentConfig
from ticketlab.tasks.base import Task
from ticketlab.tasks.language.data import load_language_data
from ticketlab.tasks.language.evaluate import evaluate
from ticketlab.tasks.language.model import build_language_model, initialize_language_model
from ticketlab.tasks.language.streams import batchify, steps_per_epoch, training_segment
from ticketlab.tasks.language.train import train_language_model
from ticketlab.tasks.metrics import METRICS, Metric

CHARACTER_DATASETS = ("tiny_shakespeare",)


def language_metric(config: ExperimentConfig) -> Metric:
    """Test perplexity (log axis) for word-level corpora, test bits per character for character-level ones."""
    if config.data.name in CHARACTER_DATASETS:
        return METRICS["bits_per_char"]  # Metric("bits_per_char", higher_is_better=False, ...)
    return METRICS["perplexity"]  # Metric("perplexity", higher_is_better=False, log_scale=True, ...)


def score_losses(model, data, config, seed: int, batches: int, first_batch: int = 0, temperature: float = 1.0):
    """Mean per-token cross-entropy of `model`'s logits divided by `temperature` on `batches` training segments of
    data seed `seed` from segment `first_batch` on (each from a zero hidden state; dropout seeded per segment), for
    SNIP, GraSP and RigL."""
    import torch.nn.functional as F

    from ticketlab.models import set_noise_seed
    from ticketlab.seeds import derive_seed

    stream = batchify(data.train, config.batch_size)
    per_epoch = steps_per_epoch(data, config)
    has_dropout = set_noise_seed(model, None)
    for index in range(first_batch, first_batch + batches):
        if has_dropout:
            set_noise_seed(model, derive_seed(seed, "score_dropout", index))
        inputs, targets, _ = training_segment(stream, index, per_epoch, data.sequence_length, seed)
        logits, _ = model(inputs, None)
        yield F.cross_entropy(logits.flatten(0, 1) / temperature, targets.flatten())


def bind_corpus_to_run(data, run_dir):
    """The data, once RUN_DIR/corpus.json records its fingerprint (first start) or matches it (ConfigError for
    another corpus: a resumed run never trains on a corpus, or a vocabulary, its models were not built for)."""
    from ticketlab.tasks.corpus_record import bind_corpus

    unit = "words" if data.level == "word" else "characters"
    bind_corpus(run_dir, {
        "fingerprint": data.fingerprint(), "origin": data.origin,
        "summary": f"{len(data.train):,} training tokens, {data.vocab_size:,} {unit} in the vocabulary",
        "train_tokens": len(data.train), "val_tokens": len(data.val), "test_tokens": len(data.test),
        "vocab_size": data.vocab_size})
    return data


TASK = Task(
    name="language",
    load_data=load_language_data,
    build_model=lambda config, data: build_language_model(config, data.vocab_size),
    initialize=lambda model, config, seed: initialize_language_model(model, config.model.init, seed),
    train=train_language_model,
    evaluate=evaluate,
    metric=language_metric,
    steps_per_epoch=steps_per_epoch,
    stackable=lambda model, device, population: False,  # one job at a time (no stacked LSTM populations)
    per_step_hook=lambda config, model: None,  # the trainer seeds its own dropout from (data_seed, step)
    score_losses=score_losses,  # SNIP, GraSP; no data-free input (SynFlow's all-ones input is not a token sequence)
    bind_run=bind_corpus_to_run,
    transfers=False,  # the vocabulary is the corpus's: another corpus is another architecture
    labelled_examples=None,  # a token stream, not (input, label) tensors: stability evaluates through `evaluate`
)
