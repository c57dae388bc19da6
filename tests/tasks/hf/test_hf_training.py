"""Fine-tuning a pre-trained transformer in the engine: exact resume after an interruption (dropout and MLM masks
seeded per step), SNIP scores from the task's own loss, GLUE's metrics against independent formulas, and the MLM
task through the CLI."""

from __future__ import annotations

import csv

import pytest
import torch

from ticketlab import cli
from ticketlab.config import ExperimentConfig
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.training.bookkeeping import TrainingInterrupted

from conftest import write_glue


def glue_config(bert_dir, glue_dir, name="sst2", **changes) -> ExperimentConfig:
    return ExperimentConfig().replace(**{
        "task": "glue", "model.name": "pretrained", "data.name": name, "data.data_dir": str(glue_dir),
        "data.validation_size": 16, "glue.model_dir": str(bert_dir), "train.optimizer": "adamw", "train.lr": 1e-3,
        "train.weight_decay": 0.1, "train.batch_size": 8, "train.steps": "8it", "train.eval_every": "4it",
        **changes})


def read_rows(path):
    return [line for line in path.read_text().splitlines()]


def test_resume_after_an_interruption_is_exact(bert_dir, sst2_dir, tmp_path):
    task = load_task("glue")
    config = glue_config(bert_dir, sst2_dir)
    data = load_task_data(task, config)
    generator = torch.Generator().manual_seed(1)
    masks = {name: (torch.rand(weight.shape, generator=generator) > 0.5).float()
             for name, weight in task.prunable(task.build_model(config, data)).items()}

    def run(job_dir, stop_after=None):
        model = task.initialize(task.build_model(config, data), config, 7)
        return model, task.train(model, data, config.train, masks=dict(masks), data_seed=3, job_dir=job_dir,
                                 checkpoint_interval_s=0.0, stop_after_step=stop_after)

    whole_model, whole = run(tmp_path / "whole")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "killed", stop_after=5)
    resumed_model, resumed = run(tmp_path / "killed")
    assert resumed.to_dict() == whole.to_dict()
    for (name, a), b in zip(whole_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert read_rows(tmp_path / "whole" / "metrics.jsonl") == read_rows(tmp_path / "killed" / "metrics.jsonl")
    weights = task.prunable(whole_model)
    assert all(torch.all(weights[name][mask == 0] == 0) for name, mask in masks.items())


def test_snip_scores_are_gradient_times_weight_of_the_task_loss(bert_dir, sst2_dir):
    from ticketlab.pruning.scores.gradients import snip_scores
    from ticketlab.tasks.hf.glue import score_losses

    task = load_task("glue")
    config = glue_config(bert_dir, sst2_dir)
    data = load_task_data(task, config)
    model = task.initialize(task.build_model(config, data), config, 3)
    scores = snip_scores(model, lambda scored: score_losses(scored, data, config.train, 5, 2), task.prunable)
    weights = task.prunable(model.train())  # scores are taken in training mode: dropout on, seeded per batch
    loss = sum(score_losses(model, data, config.train, 5, 2))
    grads = torch.autograd.grad(loss, list(weights.values()))
    for (name, weight), grad in zip(weights.items(), grads):
        torch.testing.assert_close(scores[name], (grad * weight).abs().detach())


def test_score_losses_temper_the_logits_and_start_at_the_given_batch(bert_dir, sst2_dir):
    """GraSP's temperature divides the classifier's logits; RigL's first_batch draws the batch of that step."""
    import torch.nn.functional as F

    from ticketlab.tasks.hf.glue import glue_batch, score_losses

    task = load_task("glue")
    config = glue_config(bert_dir, sst2_dir)
    data = load_task_data(task, config)
    model = task.initialize(task.build_model(config, data), config, 3).eval()
    features, labels = glue_batch(data, 2, config.train.batch_size, 5)
    with torch.no_grad():
        expected = F.cross_entropy(model(**features).logits / 200.0, labels)
        (tempered,) = score_losses(model, data, config.train, 5, 1, first_batch=2, temperature=200.0)
        (plain,) = score_losses(model, data, config.train, 5, 1, first_batch=2)
    torch.testing.assert_close(tempered, expected)
    torch.testing.assert_close(plain, F.cross_entropy(model(**features).logits, labels))


def test_glue_metrics_match_their_formulas():
    from ticketlab.tasks.hf.metrics import f1, matthews, pearson, spearman

    predictions, labels = torch.tensor([1, 1, 0, 0, 1, 0]), torch.tensor([1, 0, 0, 1, 1, 0])
    # tp 2, fp 1, fn 1, tn 2
    assert f1(predictions, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert matthews(predictions, labels) == pytest.approx((2 * 2 - 1 * 1) / (3 * 3 * 3 * 3) ** 0.5)
    x, y = torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.tensor([2.0, 1.0, 4.0, 4.0])
    expected = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
    assert pearson(x, y) == pytest.approx(expected)
    # ranks of y with a tie: 2, 1, 3.5, 3.5
    assert spearman(x, y) == pytest.approx(float(torch.corrcoef(torch.stack(
        [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 3.5, 3.5])]))[0, 1]))


@pytest.mark.slow
def test_stsb_is_regression_scored_by_pearson(bert_dir, tmp_path, capsys):
    glue_dir = write_glue(tmp_path / "STS-B", "stsb")
    argv = ["find", "--task", "glue", "--model.name", "pretrained", "--data.name", "stsb", "--data-dir",
            str(glue_dir), "--glue.model_dir", str(bert_dir), "--data.validation_size", "16", "--steps", "4it",
            "--train.eval_every", "2it", "--train.batch_size", "8", "--levels", "1", "--trials", "1",
            "--variants", "iterative_reset,snip", "--root", str(tmp_path / "runs"), "--quiet", "--no-report",
            "--workers", "1", "--prune.score_batches", "2"]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(next((tmp_path / "runs").glob("stsb_*/results.csv")).open()))
    assert {row["metric"] for row in rows} == {"pearson"}
    assert {row["variant"] for row in rows} == {"iterative_reset", "snip"}


@pytest.mark.slow
def test_mlm_task_finds_tickets_from_a_text_file(bert_dir, tmp_path):
    from conftest import WORDS
    import random

    rng = random.Random(0)
    (tmp_path / "corpus").mkdir()
    text = tmp_path / "corpus" / "corpus.txt"
    text.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)))
    argv = ["find", "--task", "mlm", "--model.name", "pretrained", "--data.name", "text", "--data-dir", str(text.parent),
            "--mlm.model_dir", str(bert_dir), "--mlm.max_length", "16", "--train.optimizer", "adamw",
            "--train.weight_decay", "0.01", "--steps", "6it", "--train.eval_every", "3it", "--train.batch_size", "8",
            "--levels", "1", "--trials", "1", "--variants", "iterative_reset,random_pruning",
            "--root", str(tmp_path / "runs"), "--quiet", "--no-report", "--workers", "1"]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(next((tmp_path / "runs").glob("text_pretrained_*/results.csv")).open()))
    assert {row["metric"] for row in rows} == {"perplexity"}
    assert all(1.0 < float(row["final_test_metric"]) < 1000.0 for row in rows)


def test_tensor_groups_are_read_from_module_types_across_encoders():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig, RobertaForMaskedLM

    from ticketlab.tasks.hf.tensors import weight_groups

    distil = weight_groups(DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)))
    layer = "distilbert.transformer.layer.0"
    assert {name: group for name, group in distil.items() if name.startswith(layer)} == {
        f"{layer}.attention.{part}.weight": "attention" for part in ("q_lin", "k_lin", "v_lin", "out_lin")} | {
        f"{layer}.ffn.{part}.weight": "ffn" for part in ("lin1", "lin2")}
    assert distil["pre_classifier.weight"] == distil["classifier.weight"] == "head"
    roberta = weight_groups(RobertaForMaskedLM(RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)))
    assert roberta["roberta.encoder.layer.0.output.dense.weight"] == "ffn"
    assert roberta["roberta.encoder.layer.0.attention.output.dense.weight"] == "attention"
    # the decoder tied to the word embeddings is listed once, as an embedding
    assert roberta["roberta.embeddings.word_embeddings.weight"] == "embeddings"
    assert "lm_head.decoder.weight" not in roberta and roberta["lm_head.dense.weight"] == "head"
