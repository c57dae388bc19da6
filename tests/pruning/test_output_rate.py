"""`prune.output_rate` lands on the output weights every task's model names, tied or not: which tensor loses which
fraction in a level's mask, counted with numpy against `round(rate * count)` computed here."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from torch import nn

from ticketlab import cli
from ticketlab.config import ExperimentConfig, PruneConfig
from ticketlab.lottery.context import keep_plan
from ticketlab.models import build_model
from ticketlab.pruning import keep_top, output_layer_name, prunable_weights, random_scores
from ticketlab.store import load_tensors
from ticketlab.tasks.language.model import LSTMLanguageModel
from ticketlab.tasks.rl.model import MLPActorCritic, NatureCNNActorCritic
from ticketlab.tasks.translation.model import TransformerTranslator

RATE, OUTPUT_RATE = 0.2, 0.1
CONFIG = ExperimentConfig(prune=PruneConfig(scope="layerwise", rate=RATE, output_rate=OUTPUT_RATE, levels=1))


class UndeclaredTied(nn.Module):
    """A custom model with no `output_weights()`: its decoder, registered last, is tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 12)
        self.mix = nn.Linear(12, 12)
        self.decoder = nn.Linear(12, 30, bias=False)
        self.decoder.weight = self.embed.weight


class Declared(nn.Module):
    """A custom model that names its output layer itself (not the last registered one)."""

    def __init__(self):
        super().__init__()
        self.body, self.head, self.auxiliary = nn.Linear(10, 20), nn.Linear(20, 4), nn.Linear(20, 3)

    def output_weights(self):
        return (self.head.weight,)


# model factory -> the prunable names that are output weights (written out by hand, not asked of the code)
CASES = {
    "mlp": (lambda: build_model("mlp", (20,), 5, hidden=(30, 16)), {"layers.5.weight"}),
    "lenet300_100": (lambda: build_model("lenet300_100", (28, 28), 10), {"layers.5.weight"}),
    "conv2": (lambda: build_model("conv2", (3, 8, 8), 10, width=4), {"classifier.5.weight"}),
    "vgg11": (lambda: build_model("vgg11", (3, 32, 32), 10, width=2), {"fc.weight"}),
    "resnet20": (lambda: build_model("resnet20", (3, 8, 8), 10, width=4), {"fc.weight"}),
    "resnet18": (lambda: build_model("resnet18", (3, 32, 32), 7, width=4), {"fc.weight"}),
    "lstm_untied": (lambda: LSTMLanguageModel(50, (16, 16)), {"decoder.weight"}),
    "lstm_tied": (lambda: LSTMLanguageModel(50, (16, 16), tie_weights=True), {"encoder.weight"}),
    "transformer_untied": (lambda: TransformerTranslator(40, width=16, layers=1, heads=2, ffn=32, tie_weights=False),
                           {"output.weight"}),
    "transformer_shared": (lambda: TransformerTranslator(40, width=16, layers=1, heads=2, ffn=32, tie_weights=True),
                           {"source_embed.weight"}),
    "rl_mlp": (lambda: MLPActorCritic(4, 2, (8, 8)), {"policy_head.weight", "value_head.weight"}),
    "rl_mlp_shared_trunk": (lambda: MLPActorCritic(4, 3, (8,), shared_trunk=True),
                            {"policy_head.weight", "value_head.weight"}),
    "rl_nature_cnn": (lambda: NatureCNNActorCritic(4, 6), {"policy_head.weight", "value_head.weight"}),
    "custom_sequential": (lambda: nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3)), {"2.weight"}),
    "custom_undeclared_tied": (UndeclaredTied, {"embed.weight"}),
    "custom_declared": (Declared, {"head.weight"}),
}


def _removed_per_tensor(model: nn.Module, mask_seed: int = 0) -> dict[str, tuple[int, int]]:
    """(removed, total) of each prunable tensor in a level-1 mask drawn at the plan's counts, counted in numpy."""
    weights = prunable_weights(model)
    plan = keep_plan(CONFIG, model)
    mask = keep_top(random_scores(weights, mask_seed), plan[1])
    counts = {}
    for name, value in mask.items():
        array = value.numpy()
        counts[name] = (int(array.size - np.count_nonzero(array)), int(array.size))
    return counts


@pytest.mark.parametrize("case", list(CASES))
def test_each_tensor_loses_its_rate_and_the_output_weights_the_output_rate(case):
    make, outputs = CASES[case]
    model = make()
    removed = _removed_per_tensor(model)
    assert outputs <= set(removed), (case, sorted(removed))
    for name, (gone, total) in removed.items():
        rate = OUTPUT_RATE if name in outputs else RATE
        assert gone == round(rate * total), (case, name, gone, total, rate)


def test_tied_matrices_are_the_output_layer_itself():
    language = LSTMLanguageModel(50, (16, 16), tie_weights=True)
    assert language.decoder.weight is prunable_weights(language)["encoder.weight"]
    assert "decoder.weight" not in prunable_weights(language)  # one tensor, listed once, pruned once
    translator = TransformerTranslator(40, width=16, layers=1, heads=2, ffn=32, tie_weights=True)
    assert translator.target_embed.weight is prunable_weights(translator)["source_embed.weight"]
    # the last-listed tensor is a recurrent / feed-forward matrix: the ordinary rate, as every other hidden layer
    assert list(prunable_weights(language))[-1] == "lstm.1.weight_hh_l0"
    removed = _removed_per_tensor(language)
    assert removed["lstm.1.weight_hh_l0"][0] == round(RATE * 4 * 16 * 16)
    assert removed["encoder.weight"][0] == round(OUTPUT_RATE * 50 * 16)


def test_output_layer_name_is_the_classifier_for_transfer():
    assert output_layer_name(build_model("conv2", (3, 8, 8), 10, width=4)) == "classifier.5.weight"
    assert output_layer_name(MLPActorCritic(4, 2, (8, 8))) == "policy_head.weight"


def test_a_layer_rates_override_still_wins_over_the_output_rate():
    model = LSTMLanguageModel(50, (16, 16), tie_weights=True)
    from ticketlab.lottery.context import layer_rates

    config = CONFIG.replace(**{"prune.layer_rates": (("encoder.weight", 0.3),)})
    rates = layer_rates(config, model)
    assert rates["encoder.weight"] == 0.3 and rates["lstm.1.weight_hh_l0"] == RATE


@pytest.mark.parametrize("entry", ["main", "executable"])
def test_a_tied_language_model_run_prunes_the_tied_matrix_at_the_output_rate(entry, tmp_path, capsys, one_thread):
    """End to end through `main` and `python -m ticketlab`: the level-1 IMP mask of a tied LSTM removes 10% of the
    embedding/decoder matrix and 20% of every recurrent matrix (the issue: the last recurrent matrix lost 10%)."""
    data = tmp_path / "data"
    data.mkdir()
    texts = {"train": " the cat sat on the mat \n the dog sat \n a cat and a dog \n" * 8,
             "valid": " the cat sat \n", "test": " a dog sat on the mat \n"}
    for split, text in texts.items():
        (data / f"ptb.{split}.txt").write_text(text)
    argv = ["find", "--preset", "lstm_ptb_small", "--data-dir", str(data), "--root", str(tmp_path / "runs"),
            "--quiet", "--no-report", "--trials", "1", "--levels", "1", "--steps", "2it", "--rewind", "0it",
            "--train.milestones", "1it", "--train.eval_every", "1it", "--model.hidden", "8,8",
            "--model.tie_weights", "true",
            "--data.sequence_length", "5", "--train.batch_size", "2", "--workers", "1",
            "--prune.rate", "0.2", "--prune.output_rate", "0.1", "--variants", "iterative_reset"]
    if entry == "main":
        assert cli.main(argv) == 0, capsys.readouterr().err
    else:
        completed = subprocess.run([sys.executable, "-m", "ticketlab", *argv], capture_output=True, text=True,
                                   timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert completed.returncode == 0, completed.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    mask = load_tensors(run_dir / "trial_0" / "level_01" / "iterative_reset" / "mask.safetensors")
    removed = {name: (int(value.numel() - value.sum()), value.numel()) for name, value in mask.items()}
    assert "decoder.weight" not in removed
    for name, (gone, total) in removed.items():
        assert gone == round((0.1 if name == "encoder.weight" else 0.2) * total), (name, gone, total)
    with open(run_dir / "layer_sparsity.csv") as handle:
        rows = {row["layer"]: row for row in csv.DictReader(handle) if row["level"] == "1"}
    for name, rate in (("encoder.weight", 0.1), ("lstm.1.weight_hh_l0", 0.2)):
        total = int(rows[name]["total"])
        assert int(rows[name]["remaining"]) == total - round(rate * total)

