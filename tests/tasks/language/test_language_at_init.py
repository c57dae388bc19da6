"""Pruning at init reaches the language task through the Task interface: SNIP and GraSP score an LSTM language
model from the task's own loss; SynFlow (no data-free token input) is a one-line error."""

import csv

import torch

from ticketlab import cli
from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from ticketlab.pruning.scores.gradients import snip_scores
from ticketlab.tasks.language.task import TASK, score_losses


def _write(directory, word_texts):
    directory.mkdir()
    for split, text in word_texts.items():
        (directory / f"ptb.{split}.txt").write_text(text)


def test_snip_on_an_lstm_is_gradient_times_weight_of_the_task_loss(tmp_path, word_texts):
    _write(tmp_path / "data", word_texts)
    config = ExperimentConfig(task="language", model=ModelConfig(name="lstm", hidden=(8,)),
                              data=DataConfig(name="ptb", sequence_length=5, data_dir=str(tmp_path / "data")),
                              train=TrainConfig(batch_size=2))
    data = TASK.load_data(config.data)
    model = TASK.initialize(TASK.build_model(config, data), config, 3)
    scores = snip_scores(model, lambda scored: score_losses(scored, data, config.train, 5, 2), TASK.prunable)
    weights = TASK.prunable(model)
    loss = sum(score_losses(model, data, config.train, 5, 2))
    grads = torch.autograd.grad(loss, list(weights.values()))
    for (name, weight), grad in zip(weights.items(), grads):
        torch.testing.assert_close(scores[name], (grad * weight).abs().detach())


def test_snip_and_grasp_variants_run_and_synflow_is_refused(tmp_path, capsys, word_texts):
    _write(tmp_path / "data", word_texts)
    argv = ["find", "--preset", "lstm_ptb_small", "--data-dir", str(tmp_path / "data"), "--root",
            str(tmp_path / "runs"), "--quiet", "--trials", "1", "--levels", "1", "--rewind", "0it", "--steps", "4it",
            "--train.eval_every", "2it", "--train.milestones", "", "--model.hidden", "8", "--data.sequence_length", "5",
            "--train.batch_size", "2", "--prune.score_batches", "2", "--workers", "1"]
    assert cli.main(argv + ["--variants", "snip,grasp,snip_shuffled"]) == 0
    results = next((tmp_path / "runs").glob("ptb_lstm_*")) / "results.csv"
    assert {row["variant"] for row in csv.DictReader(results.open())} == {"snip", "grasp", "snip_shuffled"}
    capsys.readouterr()
    assert cli.main(argv + ["--variants", "synflow", "--root", str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "synflow" in error[0] and "language" in error[0]
