"""Masked-language-modelling data: a local text corpus as fixed-length token blocks, and BERT's masking (Devlin
et al. 2019: of the tokens chosen with `mask_probability`, 80% become [MASK], 10% a random token, 10% stay).

data.data_dir is a directory holding train.txt, validation.txt (or valid.txt) and test.txt, or one .txt file whose
lines are split 90% / 5% / 5% into train / validation / test, in order (Tiny Shakespeare's directory). Each split's lines are tokenized, joined
and cut into blocks of `max_length` tokens (the tokenizer's [CLS] and [SEP] around each block where it has them);
the last partial block is dropped. Which tokens a training batch masks is a pure function of (data seed, step);
evaluation masks come from a fixed seed per split, so every evaluation of a split scores the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed

IGNORED = -100  # the label of a token that is not predicted (transformers' convention)


@dataclass
class MLMData:
    """Token blocks [blocks, max_length] of each split, and what masking needs."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    mask_token_id: int
    vocab_size: int
    special_ids: tuple[int, ...]  # never masked ([CLS], [SEP], [PAD], ...)
    mask_probability: float
    origin: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One block's token ids: what `export` checks an export on."""
        return tuple(self.test.shape[1:])

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    def to(self, device) -> "MLMData":
        return MLMData(self.train.to(device), self.val.to(device), self.test.to(device), self.mask_token_id,
                       self.vocab_size, self.special_ids, self.mask_probability, self.origin)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _split_texts(data_dir: str | None) -> tuple[dict[str, list[str]], dict]:
    if data_dir is None:
        raise ConfigError("data.data_dir is unset: name a directory holding train.txt, validation.txt and test.txt, "
                          "or one .txt file")
    path = Path(data_dir).expanduser()
    if (path / "train.txt").is_file():
        files = {"train": path / "train.txt", "val": next((candidate for candidate in (
            path / "validation.txt", path / "valid.txt") if candidate.is_file()), path / "validation.txt"),
            "test": path / "test.txt"}
        missing = [str(file) for file in files.values() if not file.is_file()]
        if missing:
            raise ConfigError(f"data.data_dir {str(path)!r} holds train.txt but not {', '.join(missing)}")
        return {split: _lines(file) for split, file in files.items()}, {split: str(file) for split, file in files.items()}
    texts = sorted(path.glob("*.txt")) if path.is_dir() else []
    if len(texts) != 1:
        raise ConfigError(f"data.data_dir {str(path)!r} holds neither train.txt, validation.txt and test.txt nor "
                          f"exactly one .txt file (found {len(texts)})")
    lines = _lines(texts[0])
    first, second = int(len(lines) * 0.9), int(len(lines) * 0.95)
    return {"train": lines[:first], "val": lines[first:second], "test": lines[second:]}, {"file": str(texts[0])}


def _blocks(tokenizer, lines: list[str], max_length: int, split: str) -> torch.Tensor:
    ids = [token for line in tokenizer(lines, add_special_tokens=False)["input_ids"] for token in line] if lines else []
    edges = [token for token in (tokenizer.cls_token_id, tokenizer.sep_token_id) if token is not None]
    width = max_length - len(edges)
    count = len(ids) // width
    if count == 0:
        raise ConfigError(f"the {split} text holds {len(ids)} tokens, fewer than one block of mlm.max_length "
                          f"{max_length}: give it more text or lower mlm.max_length")
    body = torch.tensor(ids[: count * width], dtype=torch.long).view(count, width)
    if tokenizer.cls_token_id is not None:
        body = torch.cat([torch.full((count, 1), tokenizer.cls_token_id), body], dim=1)
    if tokenizer.sep_token_id is not None:
        body = torch.cat([body, torch.full((count, 1), tokenizer.sep_token_id)], dim=1)
    return body


def load_text(data_config, tokenizer, max_length: int, mask_probability: float) -> MLMData:
    """The corpus of data_config.data_dir as token blocks (data.train_size keeps the first N training blocks)."""
    if tokenizer.mask_token_id is None:
        raise ConfigError("the model directory's tokenizer has no mask token: masked-language modelling needs one")
    texts, origin = _split_texts(data_config.data_dir)
    splits = {split: _blocks(tokenizer, lines, max_length, split) for split, lines in texts.items()}
    if data_config.train_size is not None:
        splits["train"] = splits["train"][: data_config.train_size]
    return MLMData(splits["train"], splits["val"], splits["test"], tokenizer.mask_token_id, len(tokenizer),
                   tuple(tokenizer.all_special_ids), mask_probability, origin)


def mask_tokens(blocks: torch.Tensor, data: MLMData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of `blocks` under BERT's masking drawn from `seed` (on the CPU, so every device draws the
    same); labels are IGNORED except at the chosen tokens. At least one token is chosen."""
    generator = torch.Generator().manual_seed(seed)
    tokens = blocks.cpu()
    chosen_draw, kind_draw = torch.rand(tokens.shape, generator=generator), torch.rand(tokens.shape, generator=generator)
    random_tokens = torch.randint(data.vocab_size, tokens.shape, generator=generator)
    special = torch.isin(tokens, torch.tensor(data.special_ids, dtype=torch.long))
    chosen = (chosen_draw < data.mask_probability) & ~special
    if not chosen.any():
        chosen.view(-1)[int((~special).view(-1).long().argmax())] = True
    labels = torch.where(chosen, tokens, torch.full_like(tokens, IGNORED))
    inputs = torch.where(chosen & (kind_draw < 0.8), torch.full_like(tokens, data.mask_token_id), tokens)
    inputs = torch.where(chosen & (kind_draw >= 0.8) & (kind_draw < 0.9), random_tokens, inputs)
    return inputs.to(blocks.device), labels.to(blocks.device)


def evaluation_seed(split: str) -> int:
    return derive_seed(0, "mlm_evaluation", split)
