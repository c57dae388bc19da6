"""Fixtures for the Hugging Face tasks: a tiny random-weight BERT (2 layers, width 32) and a word-level tokenizer
saved with `save_pretrained` into a temporary directory, and generated GLUE-layout files. Nothing is downloaded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("transformers")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [first + second for first in "abcdefghij" for second in "klmnopqrs"]  # 90 words
POSITIVE = set(WORDS[:10])  # a sentence holding one of these is labelled 1


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_for_module):
    """Tiny transformers only wait on each other's threads on a busy 2-core machine."""


def save_tiny_bert(directory: Path, *, head: str = "mlm", num_labels: int = 2, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32, 2 heads, FFN 64) with random weights from `seed` and its tokenizer in
    `directory`; `head` 'mlm' (a pre-trained checkpoint: no classifier) or 'classifier' (with `num_labels`)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config) if head == "mlm" else BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def sentence(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(WORDS[10:]) for _ in range(rng.randint(3, 8))]
    if positive:
        words[rng.randrange(len(words))] = rng.choice(sorted(POSITIVE))
    return " ".join(words)


def write_glue(directory: Path, task: str, train: int = 96, dev: int = 32, seed: int = 0) -> Path:
    """train.tsv and dev.tsv in GLUE's layout of `task` (sst2, stsb, cola, mrpc)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("dev", dev)):
        rows = []
        for index in range(count):
            label = rng.random() < 0.5
            first, second = sentence(rng, label), sentence(rng, False)
            if task == "sst2":
                rows.append(f"{first}\t{int(label)}")
            elif task == "cola":
                rows.append(f"src\t{int(label)}\t\t{first}")
            elif task == "mrpc":
                rows.append(f"{int(label)}\t{index}\t{index + 1}\t{first}\t{second}")
            elif task == "stsb":
                score = 5.0 * label * rng.random()
                rows.append(f"{index}\tmain\tfile\t2012\t{index}\tnone\tnone\t{first}\t{second}\t{score:.3f}")
        header = {"sst2": "sentence\tlabel", "mrpc": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                  "stsb": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
                  "cola": None}[task]
        lines = ([header] if header else []) + rows
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return directory


@pytest.fixture(scope="package")
def bert_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="package")
def sst2_dir(tmp_path_factory) -> Path:
    return write_glue(tmp_path_factory.mktemp("glue") / "SST-2", "sst2")
