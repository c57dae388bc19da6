"""Chen et al. 2020's universal subnetwork through `transfer`: a ticket found by masked-language modelling (`mlm`)
fine-tuned on a GLUE task (`glue`) from the same pre-trained directory. The encoder's tensors start from the MLM
ticket with its masks; the classifier and the pooler the MLM checkpoint lacks are freshly initialized, dense."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

from ticketlab import cli
from ticketlab.store import load_tensors

from conftest import WORDS


@pytest.fixture(scope="module")
def mlm_run(bert_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mlm")
    rng = random.Random(0)
    (root / "corpus").mkdir()
    (root / "corpus" / "corpus.txt").write_text(
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)))
    argv = ["find", "--task", "mlm", "--model.name", "pretrained", "--data.name", "text",
            "--data-dir", str(root / "corpus"), "--mlm.model_dir", str(bert_dir), "--mlm.max_length", "16",
            "--train.optimizer", "adamw", "--steps", "4it", "--train.eval_every", "2it", "--train.batch_size", "8",
            "--levels", "1", "--prune.rate", "0.5", "--prune.scope", "global", "--rewind", "0it", "--trials", "1",
            "--variants", "iterative_reset", "--root", str(root / "runs"), "--quiet", "--no-report", "--workers", "1"]
    assert cli.main(argv) == 0
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


def transfer_args(mlm_run: Path, bert_dir: Path, sst2_dir: Path, *extra: str) -> list[str]:
    return ["transfer", str(mlm_run), "--task", "glue", "--data.name", "sst2", "--data-dir", str(sst2_dir),
            "--glue.model_dir", str(bert_dir), "--data.validation_size", "16", "--train.batch_size", "16",
            "--steps", "4it", "--train.eval_every", "2it", "--quiet", "--no-report", *extra]


@pytest.fixture(scope="module")
def transfer_dir(mlm_run, bert_dir, sst2_dir) -> Path:
    assert cli.main(transfer_args(mlm_run, bert_dir, sst2_dir)) == 0
    (found,) = mlm_run.parent.glob("transfer_*")
    return found


def test_the_mlm_ticket_starts_the_glue_network_where_both_hold_the_tensor(mlm_run, transfer_dir):
    source = mlm_run / "trial_0" / "level_01" / "iterative_reset"
    source_mask = load_tensors(source / "mask.safetensors")
    source_start = load_tensors(source / "weights_init.safetensors")
    job = transfer_dir / mlm_run.name / "trial_0" / "level_01" / "transferred"
    mask, start = load_tensors(job / "mask.safetensors"), load_tensors(job / "weights_init.safetensors")
    for name, keep in source_mask.items():  # the encoder: the MLM ticket's mask and masked θ_pre
        assert torch.equal(mask[name], keep), name
    for name, value in source_start.items():
        if name in start and not name.startswith("cls."):
            assert torch.equal(start[name], value), name
    # the pooler: pruned by glue (Chen et al.) but absent from an MLM checkpoint, so dense and freshly drawn (BERT's
    # own init: normal, std 0.02), like the classifier
    assert "bert.pooler.dense.weight" not in source_start and bool(mask["bert.pooler.dense.weight"].all())
    assert 0.015 < float(start["bert.pooler.dense.weight"].std()) < 0.025
    assert "classifier.weight" in start and "classifier.weight" not in mask


def test_transferred_weights_stay_masked_and_the_random_ticket_keeps_the_counts(transfer_dir, mlm_run):
    job = transfer_dir / mlm_run.name / "trial_0" / "level_01"
    mask, final = load_tensors(job / "transferred" / "mask.safetensors"), \
        load_tensors(job / "transferred" / "weights_final.safetensors")
    for name, keep in mask.items():
        assert torch.all(final[name][~keep.bool()] == 0), name
    random_mask = load_tensors(job / "random_ticket" / "mask.safetensors")
    assert {name: int(value.sum()) for name, value in random_mask.items()} == \
        {name: int(value.sum()) for name, value in mask.items()}
    assert any(not torch.equal(random_mask[name], mask[name]) for name in mask)
    rows = list(csv.DictReader((transfer_dir / "transfer.csv").open()))
    assert {row["variant"] for row in rows} == {"transferred", "random_ticket", "target_found", "dense"}
    assert {row["source_data"] for row in rows if row["variant"] == "transferred"} == {"text adamw"}


def test_transfer_across_tasks_refuses_pairs_it_cannot_bridge(mlm_run, transfer_dir, bert_dir, sst2_dir, capsys):
    def one_line(argv):
        capsys.readouterr()
        assert cli.main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ticketlab: error: "), lines
        return lines[0]

    # an mlm target takes no other task's tickets, and mlm tickets do not transfer within mlm
    glue_run = next(transfer_dir.parent.glob("sst2_pretrained_*"))
    to_mlm = ["transfer", str(glue_run), "--task", "mlm", "--data.name", "text", "--data-dir",
              str(mlm_run.parent.parent / "corpus"), "--mlm.model_dir", str(bert_dir), "--quiet", "--no-report"]
    assert "is a 'glue' run; a 'mlm' target takes no other task's tickets" in one_line(to_mlm)
    assert "whose tickets do not transfer" in one_line(["transfer", str(mlm_run), "--quiet", "--no-report"])
    error = one_line(transfer_args(mlm_run, bert_dir, sst2_dir, "--output-layer", "masked"))
    assert "output layer 'masked'" in error and "classifier.weight" in error


def test_the_python_api_target_leaves_the_source_task_settings_behind(mlm_run, transfer_dir, bert_dir, sst2_dir):
    import ticketlab
    from ticketlab.lottery.integrity import read_run_config
    from ticketlab.lottery.transfer import target_config_for

    source = read_run_config(mlm_run)
    target = target_config_for(source, **{
        "task": "glue", "data.name": "sst2", "data.data_dir": str(sst2_dir), "glue.model_dir": str(bert_dir),
        "data.validation_size": 16, "train.batch_size": 16, "train.steps": "4it", "train.eval_every": "2it"})
    assert source.mlm.model_dir == str(bert_dir) and target.mlm.model_dir is None
    stamps = {path: path.stat().st_mtime_ns for path in transfer_dir.rglob("weights_final.safetensors")}
    result = ticketlab.transfer_tickets([mlm_run], target, report=False, progress=False)
    assert result.transfer_dir == transfer_dir  # the CLI's transfer: nothing trains again
    assert stamps == {path: path.stat().st_mtime_ns for path in transfer_dir.rglob("weights_final.safetensors")}
