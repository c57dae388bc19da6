"""Loaders of WikiText-2, PTB and Tiny Shakespeare against small files in the real layouts (offline)."""

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch

from ticketlab.config import DataConfig, TrainConfig
from ticketlab.errors import ConfigError, DataError
from ticketlab.tasks.language.data import EOS, PTB, UNK, WIKITEXT2, load_language_data
from ticketlab.tasks.language.streams import steps_per_epoch


def _md5(payload: bytes) -> str:
    return "md5:" + hashlib.md5(payload).hexdigest()


def _wikitext_zip(texts) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, text in texts.items():
            archive.writestr(f"wikitext-2/wiki.{split}.tokens", text.encode())
    return buffer.getvalue()


def _expected_words(text: str) -> list[str]:
    return [word for line in text.split("\n")[:-1] for word in line.split() + [EOS]]


def _check_word_splits(splits, texts):
    train_words = _expected_words(texts["train"])
    vocab = list(dict.fromkeys(train_words))
    assert splits.vocab == tuple(vocab) and splits.level == "word" and splits.vocab_size == len(vocab)
    assert [splits.vocab[i] for i in splits.train.tolist()] == train_words
    expected_val = [word if word in vocab else UNK for word in _expected_words(texts["valid"])]
    assert [splits.vocab[i] for i in splits.val.tolist()] == expected_val
    assert "zebra" not in splits.vocab and splits.vocab[splits.test[-2].item()] == UNK  # 'moon'
    assert splits.train.dtype == torch.int64


def test_published_checksums_and_urls():
    assert set(WIKITEXT2.checksums) == {"wikitext-2-v1.zip"} and set(PTB.checksums) == set(PTB.split_files)
    for checksum in [*WIKITEXT2.checksums.values(), *PTB.checksums.values()]:
        assert checksum.startswith("md5:") and len(checksum) == 4 + 32


def test_wikitext2_download_checksum_cache_and_data_dir(tmp_path: Path, serve, word_texts):
    payload = _wikitext_zip(word_texts)
    server = serve({"wikitext-2-v1.zip": payload})
    config = DataConfig(name="wikitext2", cache_dir=str(tmp_path / "cache"), sequence_length=5)
    checksums = {"wikitext-2-v1.zip": _md5(payload)}
    splits = load_language_data(config, base_urls=(server.url("missing"), server.url()), checksums=checksums)
    _check_word_splits(splits, word_texts)
    assert splits.sequence_length == 5
    assert (tmp_path / "cache" / "wikitext2" / "wikitext-2-v1.zip").read_bytes() == payload
    requests = len(server.requested_paths)
    load_language_data(config, base_urls=(server.url(),), checksums=checksums)
    assert len(server.requested_paths) == requests  # from the cache
    with pytest.raises(DataError, match="checksum mismatch"):
        load_language_data(DataConfig(name="wikitext2", cache_dir=str(tmp_path / "other")),
                           base_urls=(server.url(),), checksums={"wikitext-2-v1.zip": "md5:" + "0" * 32})
    # data_dir: the archive itself, or its extracted folder
    (tmp_path / "zip").mkdir()
    (tmp_path / "zip" / "wikitext-2-v1.zip").write_bytes(payload)
    _check_word_splits(load_language_data(DataConfig(name="wikitext2", data_dir=str(tmp_path / "zip"))), word_texts)
    for split, text in word_texts.items():
        (tmp_path / "dir" / "wikitext-2").mkdir(parents=True, exist_ok=True)
        (tmp_path / "dir" / "wikitext-2" / f"wiki.{split}.tokens").write_text(text)
    _check_word_splits(load_language_data(DataConfig(name="wikitext2", data_dir=str(tmp_path / "dir"))), word_texts)


def test_ptb_download_and_data_dir(tmp_path: Path, serve, word_texts):
    files = {f"ptb.{split}.txt": text.encode() for split, text in word_texts.items()}
    server = serve(files)
    config = DataConfig(name="ptb", cache_dir=str(tmp_path / "cache"))
    splits = load_language_data(config, base_urls=(server.url(),),
                                checksums={name: _md5(payload) for name, payload in files.items()})
    _check_word_splits(splits, word_texts)
    for name, payload in files.items():
        (tmp_path / "dir" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "dir" / name).write_bytes(payload)
    _check_word_splits(load_language_data(DataConfig(name="ptb", data_dir=str(tmp_path / "dir"))), word_texts)
    with pytest.raises(DataError, match="download is disabled"):
        load_language_data(DataConfig(name="ptb", cache_dir=str(tmp_path / "empty"), download=False))


def test_tiny_shakespeare_download_and_paths(tmp_path: Path, serve):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    payload = text.encode()
    server = serve({"input.txt": payload})
    checksums = {"input.txt": "sha256:" + hashlib.sha256(payload).hexdigest()}
    splits = load_language_data(DataConfig(name="tiny_shakespeare", cache_dir=str(tmp_path / "c")),
                                base_urls=(server.url(),), checksums=checksums)
    vocab = sorted(set(text))
    assert splits.vocab == tuple(vocab) and splits.level == "char"
    decoded = "".join(vocab[i] for i in torch.cat([splits.train, splits.val, splits.test]).tolist())
    assert decoded == text
    assert (len(splits.train), len(splits.val)) == (int(0.9 * len(text)), int(0.95 * len(text)) - int(0.9 * len(text)))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tinyshakespeare.txt").write_bytes(payload)
    for given in (tmp_path / "d", tmp_path / "d" / "tinyshakespeare.txt"):
        again = load_language_data(DataConfig(name="tiny_shakespeare", data_dir=str(given), train_size=100))
        assert torch.equal(again.train, splits.train[:100]) and torch.equal(again.test, splits.test)


@pytest.mark.parametrize("case, error, message", [
    ("corrupt_zip", DataError, "not a readable zip"),
    ("zip_missing_member", DataError, "lacks wikitext-2/wiki.test.tokens"),
    ("empty_split", DataError, "wiki.valid.tokens holds no tokens"),
    ("not_utf8", DataError, "wiki.train.tokens is not UTF-8"),
    ("no_unk", DataError, "no '<unk>' token"),
    ("missing_dir", DataError, "does not exist"),
    ("empty_text", DataError, "too few for a train split"),
    ("too_long", ConfigError, "sequence_length 50 x train.batch_size 4 does not fit"),
])
def test_bad_input_is_one_line_error(tmp_path: Path, word_texts, case, error, message):
    texts = word_texts
    name, data_dir = "wikitext2", tmp_path
    if case == "corrupt_zip":
        (tmp_path / "wikitext-2-v1.zip").write_bytes(_wikitext_zip(texts)[:-40])
    elif case == "zip_missing_member":
        (tmp_path / "wikitext-2-v1.zip").write_bytes(_wikitext_zip({k: v for k, v in texts.items() if k != "test"}))
    elif case in ("empty_split", "not_utf8", "no_unk", "too_long"):
        if case == "empty_split":
            texts["valid"] = "\n \n"
        if case == "no_unk":
            texts["train"] = texts["train"].replace("<unk>", "cow")
        for split, text in texts.items():
            (tmp_path / f"wiki.{split}.tokens").write_bytes(
                "caf\u00e9 ".encode("latin-1") + text.encode() if case == "not_utf8" and split == "train" else text.encode())
    elif case == "missing_dir":
        data_dir = tmp_path / "nowhere"
    elif case == "empty_text":
        name, data_dir = "tiny_shakespeare", tmp_path / "input.txt"
        data_dir.write_text("ab")
    with pytest.raises(error, match=message) as raised:
        splits = load_language_data(DataConfig(name=name, data_dir=str(data_dir), sequence_length=50))
        steps_per_epoch(splits, TrainConfig(batch_size=4))
    assert "\n" not in str(raised.value)
