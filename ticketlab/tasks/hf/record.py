"""What a Hugging Face run directory records of its inputs (RUN_DIR/corpus.json): a fingerprint of the tokenized
splits and of the model directory's files, so a resumed run refuses another model or other data (paths stay out of
the config's hash, and a directory's content can change under its path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ticketlab.tasks.corpus_record import bind_corpus

MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "tokenizer.json", "vocab.txt", "*.model")


def _update(digest, tensor: torch.Tensor) -> None:
    digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def model_files_digest(model_dir: str | Path, digest) -> None:
    """Feed the model directory's config, weight and tokenizer files (names and bytes) into `digest`."""
    root = Path(model_dir)
    for path in sorted({path for pattern in MODEL_FILES for path in root.glob(pattern) if path.is_file()}):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)


def bind_inputs(data, run_dir, tensors: dict[str, torch.Tensor], summary: str):
    """The data, once RUN_DIR/corpus.json records the fingerprint of `tensors` and of the model directory
    (data.origin["model_dir"]) on the first start, or matches it (ConfigError otherwise)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        _update(digest, tensors[name])
    model_files_digest(data.origin["model_dir"], digest)
    bind_corpus(run_dir, {"fingerprint": digest.hexdigest(), "origin": str(data.origin.get("data_dir")),
                          "summary": summary, "model_dir": str(data.origin["model_dir"])})
    return data
