"""What a language run accepts as input, through the command line: Tiny Shakespeare's --data-dir as the text file
or its directory, sizes and settings the corpus cannot honour refused (never capped or ignored), and a resume with
another corpus or an edited config.json refused in one line with the run left as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ticketlab import cli

WORDS = ["to be ", "or not ", "that is ", "the question\n", "whether ", "tis nobler "]


def _text(seed: int, count: int = 300) -> str:
    generator = torch.Generator().manual_seed(seed)
    return "".join(WORDS[index] for index in torch.randint(len(WORDS), (count,), generator=generator))


def _find(data_dir, root, *extra) -> list[str]:
    return ["find", "--preset", "lstm_tiny", "--data-dir", str(data_dir), "--root", str(root), "--quiet",
            "--no-report", "--workers", "1", "--steps", "6it", "--train.eval_every", "3it", "--levels", "1",
            "--variants", "iterative_reset", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    return err[0]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*"))
            if path.is_file() and path.name != ".lock"}


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(_text(0))
    return path


@pytest.fixture(scope="module")
def finished_run(text_file, tmp_path_factory) -> Path:
    """A finished tiny run whose --data-dir was the text file itself."""
    root = tmp_path_factory.mktemp("runs")
    assert cli.main(_find(text_file, root)) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def test_tiny_shakespeare_data_dir_is_the_file_or_a_directory_holding_it(finished_run, text_file, tmp_path, capsys):
    record = json.loads((finished_run / "corpus.json").read_text())
    assert record["origin"] == str(text_file) and record["train_tokens"] == int(0.9 * len(text_file.read_text()))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "input.txt").write_bytes(text_file.read_bytes())
    run_dir = _copy(finished_run, tmp_path)
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert cli.main(_find(folder, tmp_path / "runs")) == 0  # the same corpus from its folder: nothing to train
    capsys.readouterr()
    assert _snapshot(run_dir)["trial_0/level_01/iterative_reset/result.json"] == \
        before["trial_0/level_01/iterative_reset/result.json"]
    assert cli.main(_find(tmp_path / "absent.txt", tmp_path / "runs")) == 2
    assert "'" + str(tmp_path / "absent.txt") + "' is neither the tiny_shakespeare text file nor a directory" in \
        _one_error_line(capsys)


@pytest.mark.parametrize("change", ["another_text", "same_sizes"])
def test_resume_with_another_corpus_is_refused_and_the_run_kept(finished_run, text_file, tmp_path, capsys, change):
    text = text_file.read_text()
    if change == "another_text":
        other = _text(1, 200).replace("q", "Q")  # another length and vocabulary: the models would not fit it
    else:
        position = text.index("to be")
        other = text[:position] + "ot eb" + text[position + 5:]  # same characters, same length: only the order
    (tmp_path / "other.txt").write_text(other)
    run_dir = _copy(finished_run, tmp_path)
    before = _snapshot(run_dir)
    capsys.readouterr()
    # a new variant needs training: before, it loaded the dense weights into a model of another vocabulary (or
    # silently trained on the other text)
    assert cli.main(_find(tmp_path / "other.txt", tmp_path / "runs", "--variants",
                          "iterative_reset,random_pruning")) == 2
    line = _one_error_line(capsys)
    assert f"the corpus at {tmp_path / 'other.txt'}" in line and f"({text_file}: " in line, line
    assert "use that corpus, or a new --root" in line
    assert _snapshot(run_dir) == before


def test_train_size_beyond_the_corpus_is_refused_with_its_size(text_file, tmp_path, capsys):
    train_tokens = int(0.9 * len(text_file.read_text()))  # the 90/5/5 split by position
    assert cli.main(_find(text_file, tmp_path / "runs", "--data.train_size", str(train_tokens + 1))) == 2
    line = _one_error_line(capsys)
    assert f"data.train_size {train_tokens + 1} is larger than the {train_tokens} training tokens" in line
    assert f"use at most {train_tokens}" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run directory left


@pytest.mark.parametrize("flag, value, message", [
    ("--data.classes", "0-4", "data.classes '0-4' applies to classification only, not to a language model"),
    ("--data.vocab_size", "100", "data.vocab_size 100 applies to translation only"),
    ("--data.augment", "true", "data.augment True applies to image data only"),
])
def test_settings_a_language_model_does_not_read_are_refused(text_file, tmp_path, capsys, flag, value, message):
    assert cli.main(_find(text_file, tmp_path / "runs", flag, value)) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_config_json_edited_to_another_task_is_refused(finished_run, text_file, tmp_path, capsys):
    run_dir = _copy(finished_run, tmp_path)
    record = json.loads((run_dir / "config.json").read_text())
    record["config"].update(task="classification")
    record["config"]["data"]["name"], record["config"]["model"]["name"] = "mnist1d", "mlp"
    (run_dir / "config.json").write_text(json.dumps(record))
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert cli.main(_find(text_file, tmp_path / "runs")) == 2
    line = _one_error_line(capsys)
    assert f"{run_dir / 'config.json'} was changed" in line and f"recorded hash {record['hash']}" in line, line
    assert _snapshot(run_dir) == before  # not rewritten


def test_executable_refuses_a_train_size_beyond_the_corpus(text_file, tmp_path):
    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]
    done = subprocess.run([*command, *_find(text_file, tmp_path / "runs", "--data.train_size", "10000000")],
                          capture_output=True, text=True, timeout=120)
    train_tokens = int(0.9 * len(text_file.read_text()))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"ticketlab: error: data.train_size 10000000 is larger than the {train_tokens} training tokens of "
        f"tiny_shakespeare ({text_file}); use at most {train_tokens}"], done.stderr
