"""The translation task through the lottery engine and the console entry point: a tiny run, exact masks, exact
resume, the run directory's tokenizer, and bad input as one line."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.store import load_tensors
from ticketlab.tasks import load_task
from ticketlab.tasks.translation.train import TrainingInterrupted, train_translation_model

TASK = load_task("translation")


def find_args(multi30k_dir, root, cache, *extra):
    return ["find", "--preset", "transformer_tiny", "--data-dir", str(multi30k_dir), "--data.cache_dir", str(cache),
            "--root", str(root), "--quiet", "--no-report", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def tiny_run(multi30k_dir, tmp_path_factory) -> Path:
    root, cache = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("cache")
    assert main(find_args(multi30k_dir, root, cache)) == 0
    (run_dir,) = [path for path in root.iterdir() if path.is_dir()]
    return run_dir


def test_tiny_run_reports_bleu_and_keeps_its_tokenizer(tiny_run, multi30k_dir, capsys):
    rows = list(csv.DictReader((tiny_run / "results.csv").open()))
    assert {row["metric"] for row in rows} == {"bleu"}
    assert len(rows) == 3 * 3  # 3 variants x levels 0..2
    assert all(0.0 <= float(row["final_test_metric"]) <= 100.0 for row in rows)
    result = json.loads((tiny_run / "trial_0" / "level_01" / "iterative_reset" / "result.json").read_text())
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert result["beam_size"] == 1
    tokenizer = json.loads((tiny_run / "tokenizer.json").read_text())
    assert tokenizer["model"]["type"] == "BPE" and len(tokenizer["model"]["vocab"]) == 300


def test_rerunning_trains_nothing(tiny_run, multi30k_dir, capsys):
    before = (tiny_run / "results.csv").read_text()
    stamps = {path: path.stat().st_mtime_ns for path in tiny_run.rglob("weights_final.safetensors")}
    # another cache directory (not part of the config hash) retrains the tokenizer there, identically
    assert main(find_args(multi30k_dir, tiny_run.parent, tiny_run.parent / "other-cache")) == 0
    assert (tiny_run / "results.csv").read_text() == before
    assert stamps == {path: path.stat().st_mtime_ns for path in tiny_run.rglob("weights_final.safetensors")}


def test_pruned_weights_are_exactly_zero_in_every_job(tiny_run):
    for mask_path in tiny_run.rglob("mask.safetensors"):
        mask = load_tensors(mask_path)
        final = load_tensors(mask_path.parent / "weights_final.safetensors")
        for name, keep in mask.items():
            assert torch.all(final[name][~keep.bool()] == 0), (mask_path, name)
    level_2 = load_tensors(tiny_run / "trial_0" / "level_02" / "iterative_reset" / "mask.safetensors")
    kept = sum(int(m.sum()) for m in level_2.values()) / sum(m.numel() for m in level_2.values())
    assert kept == pytest.approx(0.64, abs=0.01)  # 20% a round, every layer (attention, FFN, embeddings)


def test_resume_after_an_interruption_is_exact(tiny_config, tiny_data, tmp_path):
    config = tiny_config.replace(**{"train.steps": "12it", "train.eval_every": "4it", "model.dropout": 0.1})
    masks = {name: (torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)) > 0.3).float()
             for name, weight in TASK.prunable(TASK.build_model(config, tiny_data)).items()}

    def fresh():
        return TASK.initialize(TASK.build_model(config, tiny_data), config, 0)

    whole = fresh()
    expected = train_translation_model(whole, tiny_data, config.train, masks=masks, data_seed=3)
    interrupted = fresh()
    with pytest.raises(TrainingInterrupted):
        train_translation_model(interrupted, tiny_data, config.train, masks=masks, data_seed=3, job_dir=tmp_path,
                                checkpoint_interval_s=0.0, stop_after_step=6)
    resumed = fresh()
    result = train_translation_model(resumed, tiny_data, config.train, masks=masks, data_seed=3, job_dir=tmp_path,
                                     checkpoint_interval_s=0.0)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert result == expected
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [4, 8, 12]


def _write_corpus(directory: Path, pairs: dict[str, tuple[list[str], list[str]]]):
    directory.mkdir(parents=True, exist_ok=True)
    for split, (de, en) in pairs.items():
        for language, lines in (("de", de), ("en", en)):
            (directory / f"{split}.{language}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return directory


GOOD = (["ein hund läuft", "eine katze sitzt"] * 40, ["a dog runs", "a cat sits"] * 40)


def _parallel_args(directory, tmp_path, *extra):
    return ["find", "--preset", "transformer_tiny", "--data.name", "parallel", "--data-dir", str(directory),
            "--data.cache_dir", str(tmp_path / "cache"), "--root", str(tmp_path / "runs"), "--quiet", "--no-report",
            "--data.train_size", "80", "--data.vocab_size", "40", *extra]


@pytest.mark.parametrize("pairs, extra, fragments", [
    ({"train": (GOOD[0], GOOD[1][:-1]), "valid": GOOD, "test": GOOD}, [], ["train.de has 80 lines", "79"]),
    ({"train": (GOOD[0][:5] + [""] + GOOD[0][6:], GOOD[1]), "valid": GOOD, "test": GOOD}, [], ["train.de line 6 is empty"]),
    ({"train": GOOD, "valid": GOOD, "test": GOOD}, ["--data.vocab_size", "8"], ["data.vocab_size 8 is too small"]),
    ({"train": GOOD, "valid": GOOD}, [], ["no test.de or test.de.gz in"]),
    ({"train": GOOD, "valid": GOOD, "test": GOOD}, ["--data.source", "en", "--data.target", "en"], ["both 'en'"]),
    ({"train": GOOD, "valid": GOOD, "test": GOOD}, ["--train.batch_size", "3"], ["train.batch_size 3", "use at least"]),
])
def test_bad_corpora_and_settings_are_one_line(pairs, extra, fragments, tmp_path, capsys):
    directory = _write_corpus(tmp_path / "corpus", pairs)
    code = main(_parallel_args(directory, tmp_path, *extra))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_unknown_language_pair_is_one_line(multi30k_dir, tmp_path, capsys):
    code = main(find_args(multi30k_dir, tmp_path / "runs", tmp_path / "cache", "--data.source", "fr"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "data.source 'fr'" in err[0] and "de, en" in err[0], err


def test_a_corrupt_tokenizer_in_the_run_directory_is_one_line_and_keeps_the_run(tiny_run, multi30k_dir, tmp_path,
                                                                               capsys):
    run_dir = tmp_path / "runs" / tiny_run.name
    shutil.copytree(tiny_run, run_dir)
    (run_dir / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    before = sorted(path.name for path in run_dir.rglob("*"))
    code = main(find_args(multi30k_dir, tmp_path / "runs", tmp_path / "cache"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "tokenizer.json is not a valid tokenizer" in err[0], err
    assert sorted(path.name for path in run_dir.rglob("*")) == before  # nothing removed


def test_gzip_and_plain_files_read_the_same(tmp_path, capsys):
    plain = _write_corpus(tmp_path / "plain", {"train": GOOD, "valid": GOOD, "test": GOOD})
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for path in plain.iterdir():
        (zipped / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    from ticketlab.config import DataConfig

    datas = [TASK.load_data(DataConfig(name="parallel", data_dir=str(folder), cache_dir=str(tmp_path / "c"),
                                       vocab_size=40)) for folder in (plain, zipped)]
    assert torch.equal(datas[0].train.source, datas[1].train.source)
    assert datas[0].test.references == datas[1].test.references == tuple(GOOD[1])
