"""Parallel corpora for translation, held in memory as padded subword-id tensors.

Multi30k (task 1, German-English image captions: 29,000 training pairs, 1,014 validation pairs and the 1,000 of
test_2016_flickr) is read from `data.data_dir` (the files `train.de.gz`, `val.en.gz`, ... gzip or plain) or
downloaded once into the cache with its sha256. `parallel` reads any directory of IWSLT/WMT-style parallel text
(`train.<lang>`, `valid|val|dev.<lang>`, `test.<lang>`, gzip or plain, one sentence a line). Either direction:
`data.source` and `data.target`.

A joint BPE tokenizer (see `tokenizer`) is trained on the training split's source and target text; a run
directory keeps the one its models were trained with (`bind_run`).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ticketlab.config import DataConfig
from ticketlab.data.download import cached_or_download
from ticketlab.data.mnist import resolve_cache_root
from ticketlab.errors import ConfigError, DataError, IntegrityError
from ticketlab.store import atomic_write_bytes
from ticketlab.tasks.data_settings import refuse_foreign_settings
from ticketlab.tasks.translation.tokenizer import BOS_ID, EOS_ID, PAD_ID, encode, load_tokenizer, train_tokenizer

TOKENIZER_FILE = "tokenizer.json"
DEFAULT_PAIR = ("de", "en")
DEFAULT_VOCAB_SIZE = 8000
MULTI30K_LANGUAGES = ("de", "en")
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
MULTI30K_URLS = ("https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",)
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}
PARALLEL_SPLITS = {"train": ("train",), "val": ("valid", "val", "dev"), "test": ("test",)}


@dataclass(frozen=True)
class Split:
    """One split: source ids [N, S] and target ids [N, T] (<s> ... </s>), both padded with 0, and the raw
    sentences (the target ones are the BLEU references)."""

    source: torch.Tensor
    target: torch.Tensor
    source_text: tuple[str, ...]
    references: tuple[str, ...]

    def to(self, device) -> "Split":
        return replace(self, source=self.source.to(device), target=self.target.to(device))

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True)
class TranslationData:
    """Train/validation/test splits, the tokenizer (JSON) that made them and its vocabulary size."""

    train: Split
    val: Split
    test: Split
    tokenizer_json: str
    vocab_size: int
    source_language: str
    target_language: str
    origin: str = ""  # the directory the corpus was read from, for messages

    def fingerprint(self) -> str:
        """sha256 of the language pair and every split's sentences: another corpus (or a changed one) changes it."""
        digest = hashlib.sha256(f"{self.source_language}\0{self.target_language}\0".encode())
        for name in ("train", "val", "test"):
            split = self.split(name)
            digest.update(f"{name}\0{len(split)}\0".encode())
            for line in (*split.source_text, *split.references):
                digest.update(line.encode("utf-8") + b"\n")
        return digest.hexdigest()

    def to(self, device) -> "TranslationData":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ConfigError(f"unknown split {name!r}; allowed: train, val, test")
        return getattr(self, name)


def language_pair(config: DataConfig) -> tuple[str, str]:
    source = config.source or DEFAULT_PAIR[0]
    target = config.target or (DEFAULT_PAIR[1] if source != DEFAULT_PAIR[1] else DEFAULT_PAIR[0])
    if source == target:
        raise ConfigError(f"data.source and data.target are both {source!r}; choose two languages")
    if config.name == "multi30k":
        for label, language in (("data.source", source), ("data.target", target)):
            if language not in MULTI30K_LANGUAGES:
                raise ConfigError(f"{label} {language!r} is not a Multi30k task-1 language here; allowed: "
                                  f"{', '.join(MULTI30K_LANGUAGES)}")
    return source, target


def load_translation_data(config: DataConfig) -> TranslationData:
    """The corpus of `config` (multi30k or parallel), tokenized with a BPE model trained on its training split.

    `data.train_size` keeps the first N training pairs (more than the corpus holds is refused: ConfigError naming
    its size), as is a `data.eval_size` beyond the smaller of the validation and test splits; `data.classes` and
    the image settings mean nothing to a translation model and are refused."""
    refuse_foreign_settings(config, "translation", f"translation ({config.name})")  # data.classes, image settings
    source, target = language_pair(config)
    texts = {split: _read_pair(config, split, source, target) for split in ("train", "val", "test")}
    train_source, train_target = texts["train"]
    if config.train_size is not None:
        if config.train_size > len(train_source):
            raise ConfigError(f"data.train_size {config.train_size} is larger than the {len(train_source)} training "
                              f"pairs of {config.name}; use at most {len(train_source)}")
        train_source, train_target = train_source[: config.train_size], train_target[: config.train_size]
        texts["train"] = (train_source, train_target)
    if config.eval_size is not None:
        smallest = min(len(texts[split][0]) for split in ("val", "test"))
        if config.eval_size > smallest:
            sizes = ", ".join(f"{len(texts[split][0])} {split}" for split in ("val", "test"))
            raise ConfigError(f"data.eval_size {config.eval_size} is larger than the evaluation pairs of {config.name} "
                              f"({sizes}); use at most {smallest}")
        texts.update({split: tuple(lines[: config.eval_size] for lines in texts[split]) for split in ("val", "test")})
    vocab_size = config.vocab_size or DEFAULT_VOCAB_SIZE
    tokenizer_json = _cached_tokenizer(config, train_source + train_target, vocab_size)
    origin = config.data_dir or str(resolve_cache_root(config.cache_dir) / "multi30k")
    return replace(encode_corpus(texts, tokenizer_json, source, target), origin=str(origin))


def encode_corpus(texts: dict, tokenizer_json: str, source: str, target: str) -> TranslationData:
    """TranslationData of raw (source lines, target lines) per split, encoded with the tokenizer `tokenizer_json`."""
    tokenizer = load_tokenizer(tokenizer_json)
    splits = {}
    for name, (source_lines, target_lines) in texts.items():
        source_ids = [[*ids, EOS_ID] for ids in encode(tokenizer, list(source_lines))]
        target_ids = [[BOS_ID, *ids, EOS_ID] for ids in encode(tokenizer, list(target_lines))]
        splits[name] = Split(_padded(source_ids), _padded(target_ids), tuple(source_lines), tuple(target_lines))
    return TranslationData(**splits, tokenizer_json=tokenizer_json, vocab_size=tokenizer.get_vocab_size(),
                           source_language=source, target_language=target)


def bind_run(data: TranslationData, run_dir: Path) -> TranslationData:
    """The data encoded with the run directory's tokenizer.json: written there on a run's first start, read (and
    checked) on every later one, so a resumed run and its decoding use the tokenizer its models learned.

    RUN_DIR/corpus.json records the corpus's fingerprint and the tokenizer's sha256 on the first start: another
    corpus (ConfigError) or an edited or missing tokenizer.json (IntegrityError) is refused, never half-used."""
    from ticketlab.tasks.corpus_record import CORPUS_FILE, bind_corpus

    path = Path(run_dir) / TOKENIZER_FILE
    stored = _stored_tokenizer(path)
    tokenizer_sha256 = hashlib.sha256((data.tokenizer_json if stored is None else stored).encode("utf-8")).hexdigest()
    record = bind_corpus(run_dir, {
        "fingerprint": data.fingerprint(), "origin": data.origin,
        "summary": f"{len(data.train):,} training pairs {data.source_language}-{data.target_language}",
        "pairs": {name: len(data.split(name)) for name in ("train", "val", "test")},
        "tokenizer_sha256": tokenizer_sha256})
    recorded = record.get("tokenizer_sha256", tokenizer_sha256)
    if recorded != tokenizer_sha256:
        state = "is missing and this corpus's tokenizer differs from" if stored is None else "differs from"
        raise IntegrityError(f"{path} {state} the one this run's models were trained with (sha256 {recorded[:16]}... "
                             f"in {Path(run_dir) / CORPUS_FILE}): restore it, or delete the run directory to start "
                             "over")
    if stored is None:
        atomic_write_bytes(path, data.tokenizer_json.encode("utf-8"))
        return data
    if stored == data.tokenizer_json:
        return data
    texts = {name: (data.split(name).source_text, data.split(name).references) for name in ("train", "val", "test")}
    return replace(encode_corpus(texts, stored, data.source_language, data.target_language), origin=data.origin)


def _stored_tokenizer(path: Path) -> str | None:
    """The run directory's tokenizer JSON, checked to be a valid tokenizer of ours; None when there is none yet."""
    if not path.exists():
        return None
    try:
        stored = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{path} is damaged (not UTF-8 text); the run's models were trained with it: restore "
                             "it, or delete the run directory to start over") from None
    load_tokenizer(stored, where=str(path))
    return stored


def _padded(sequences: list[list[int]]) -> torch.Tensor:
    width = max((len(ids) for ids in sequences), default=1)
    out = torch.full((len(sequences), max(width, 1)), PAD_ID, dtype=torch.int64)
    for row, ids in enumerate(sequences):
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


def _cached_tokenizer(config: DataConfig, texts: list[str], vocab_size: int) -> str:
    """The BPE tokenizer of `texts`, trained once and kept in the cache under the digest of its inputs."""
    digest = hashlib.sha256()
    digest.update(f"bpe-metaspace-v1:{vocab_size}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    path = resolve_cache_root(config.cache_dir) / "tokenizers" / f"{digest.hexdigest()[:24]}.json"
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
            load_tokenizer(text)
            return text
        except (IntegrityError, UnicodeDecodeError, OSError):
            pass  # a damaged cache entry is trained again
    text = train_tokenizer(texts, vocab_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError:
        pass  # an unwritable cache only costs retraining
    return text


def _read_pair(config: DataConfig, split: str, source: str, target: str) -> tuple[list[str], list[str]]:
    source_path, target_path = (_split_file(config, split, language) for language in (source, target))
    source_lines, target_lines = _read_lines(source_path), _read_lines(target_path)
    if len(source_lines) != len(target_lines):
        raise DataError(f"{source_path} has {len(source_lines)} lines but {target_path} has {len(target_lines)}: "
                        "parallel files must have one sentence a line, pair for pair")
    for path, lines in ((source_path, source_lines), (target_path, target_lines)):
        empty = next((number for number, line in enumerate(lines, 1) if not line.strip()), None)
        if empty is not None:
            raise DataError(f"{path} line {empty} is empty; every line must hold a sentence (remove the pair from "
                            "both files)")
    if not source_lines:
        raise DataError(f"{source_path} holds no sentences")
    return source_lines, target_lines


def _split_file(config: DataConfig, split: str, language: str) -> Path:
    if config.name == "multi30k":
        name = f"{MULTI30K_SPLITS[split]}.{language}.gz"
        if config.data_dir is not None:
            return _find_local(Path(config.data_dir).expanduser(), (MULTI30K_SPLITS[split],), language)
        target_dir = resolve_cache_root(config.cache_dir) / "multi30k"
        return cached_or_download("Multi30k", name, f"sha256:{MULTI30K_SHA256[name]}", MULTI30K_URLS, target_dir,
                                  config.download)
    if config.data_dir is None:
        raise ConfigError("data.name 'parallel' reads a directory of parallel text files: pass --data-dir DIR")
    return _find_local(Path(config.data_dir).expanduser(), PARALLEL_SPLITS[split], language)


def _find_local(directory: Path, stems: tuple[str, ...], language: str) -> Path:
    candidates = [directory / f"{stem}.{language}{suffix}" for stem in stems for suffix in ("", ".gz")]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise DataError(f"no {' or '.join(path.name for path in candidates)} in {directory}")
    return found


def _read_lines(path: Path) -> list[str]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line.rstrip("\r") for line in lines]
