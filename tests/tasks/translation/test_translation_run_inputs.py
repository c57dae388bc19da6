"""What a translation run accepts on resume, through the command line, on generated parallel corpora: another
corpus and an edited tokenizer.json are refused in one line with the run left as it was, a lost tokenizer.json
is restored from the same corpus, and sizes or settings the corpus cannot honour are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main

pytest.importorskip("tokenizers")

SUBJECTS = [("ein hund", "a dog"), ("eine katze", "a cat"), ("ein mann", "a man"), ("eine frau", "a woman")]
VERBS = [("läuft", "runs"), ("sitzt", "sits"), ("schläft", "sleeps"), ("springt", "jumps")]
SIZES = {"train": 48, "valid": 8, "test": 8}


def _write_corpus(directory: Path, seed: int, suffix: tuple[str, str] = ("", "")) -> Path:
    """Seeded subject-verb pairs in the IWSLT layout (train/valid/test.{de,en}); `suffix` words end every pair."""
    directory.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    for split, count in SIZES.items():
        subjects = torch.randint(len(SUBJECTS), (count,), generator=generator).tolist()
        verbs = torch.randint(len(VERBS), (count,), generator=generator).tolist()
        for side, language in enumerate(("de", "en")):
            lines = [f"{SUBJECTS[s][side]} {VERBS[v][side]}{suffix[side]}\n" for s, v in zip(subjects, verbs)]
            (directory / f"{split}.{language}").write_text("".join(lines), encoding="utf-8")
    return directory


def _find(data_dir, root, cache, *extra) -> list[str]:
    return ["find", "--preset", "transformer_tiny", "--data.name", "parallel", "--data-dir", str(data_dir),
            "--data.cache_dir", str(cache), "--root", str(root), "--quiet", "--no-report", "--workers", "1",
            "--data.train_size", str(SIZES["train"]), "--data.eval_size", str(SIZES["test"]), "--data.vocab_size", "50",
            "--train.batch_size", "256",
            "--steps", "4it", "--train.warmup", "1it", "--train.eval_every", "2it", "--rewind", "1it",
            "--levels", "1", "--variants", "iterative_reset", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    return err[0]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*"))
            if path.is_file() and path.name != ".lock"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("data") / "corpus", seed=0)


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory) -> Path:
    root, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    assert main(_find(corpus, root, cache)) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path, capsys) -> Path:
    copy = tmp_path / "runs" / finished_run.name
    shutil.copytree(finished_run, copy)
    capsys.readouterr()
    return copy


def test_the_run_records_its_corpus_and_tokenizer(finished_run, corpus):
    record = json.loads((finished_run / "corpus.json").read_text())
    assert record["origin"] == str(corpus) and record["pairs"] == {"train": 48, "val": 8, "test": 8}
    assert record["tokenizer_sha256"] == hashlib.sha256((finished_run / "tokenizer.json").read_bytes()).hexdigest()


@pytest.mark.parametrize("change", ["other_sentences", "one_word_more"])
def test_resume_with_another_corpus_is_refused_and_the_run_kept(run_copy, corpus, tmp_path, capsys, change):
    other = _write_corpus(tmp_path / "other", *((1,) if change == "other_sentences" else (0, (" heute", " today"))))
    before = _snapshot(run_copy)
    # a new variant needs training: it would have trained on the other corpus with the old tokenizer
    assert main(_find(other, run_copy.parent, tmp_path / "cache", "--variants", "iterative_reset,random_pruning")) == 2
    line = _one_error_line(capsys)
    assert f"the corpus at {other} (48 training pairs de-en) is not the one this run was trained on ({corpus}: " \
        in line, line
    assert _snapshot(run_copy) == before


def test_an_edited_tokenizer_is_refused_and_kept(run_copy, corpus, tmp_path, capsys):
    tokenizer = json.loads((run_copy / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    first, second = (token for token, index in vocab.items() if index in (10, 11))
    vocab[first], vocab[second] = vocab[second], vocab[first]  # still a valid tokenizer, but not the run's
    (run_copy / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    before = _snapshot(run_copy)
    assert main(_find(corpus, run_copy.parent, tmp_path / "cache", "--variants", "iterative_reset,random_pruning")) == 2
    line = _one_error_line(capsys)
    assert f"{run_copy / 'tokenizer.json'} differs from the one this run's models were trained with" in line, line
    assert _snapshot(run_copy) == before


def test_a_lost_tokenizer_is_restored_from_the_same_corpus(run_copy, finished_run, corpus, tmp_path, capsys):
    (run_copy / "tokenizer.json").unlink()
    assert main(_find(corpus, run_copy.parent, tmp_path / "cache")) == 0  # finished: nothing trains
    assert (run_copy / "tokenizer.json").read_bytes() == (finished_run / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("extra, fragments", [
    (["--data.train_size", "49"], ["data.train_size 49 is larger than the 48 training pairs", "use at most 48"]),
    (["--data.classes", "0-3"], ["data.classes '0-3' applies to classification only, not to translation"]),
    (["--data.image_size", "32"], ["data.image_size 32 applies to image data only"]),
    (["--data.eval_size", "9"], ["data.eval_size 9 is larger than the evaluation pairs of parallel (8 val, 8 test)",
                                 "use at most 8"]),
    (["--data.eval_size", "100000"], ["data.eval_size 100000 is larger", "use at most 8"]),
    (["--data.target", ""], ["--data.target '' is empty; name a language code"]),
    (["--data.source", " "], ["--data.source ' ' is empty; name a language code"]),
    (["--data.sequence_length", "50"], ["data.sequence_length 50 applies to language only, not to translation "
                                        "(parallel): the translation task does not use it"]),
    (["--rl.num_envs", "8"], ["rl.num_envs 8 applies to reinforcement learning only"]),
])
def test_settings_the_corpus_cannot_honour_are_refused(corpus, tmp_path, capsys, extra, fragments):
    assert main(_find(corpus, tmp_path / "runs", tmp_path / "cache", *extra)) == 2
    line = _one_error_line(capsys)
    assert all(fragment in line for fragment in fragments), line
    assert not any((tmp_path / "runs").glob("*/*"))  # no run directory holds anything


def test_eval_size_is_checked_against_the_smaller_evaluation_split(corpus, tmp_path, capsys):
    """data.eval_size cuts the validation and the test split: it may not exceed the smaller of the two (here the
    test split, cut to 5 pairs), and the message names both sizes and the maximum."""
    smaller = tmp_path / "smaller"
    shutil.copytree(corpus, smaller)
    for language in ("de", "en"):
        path = smaller / f"test.{language}"
        path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:5]), encoding="utf-8")
    assert main(_find(smaller, tmp_path / "runs", tmp_path / "cache", "--data.eval_size", "6")) == 2
    line = _one_error_line(capsys)
    assert "data.eval_size 6 is larger than the evaluation pairs of parallel (8 val, 5 test); use at most 5" in line
    assert not any((tmp_path / "runs").glob("*/*"))
