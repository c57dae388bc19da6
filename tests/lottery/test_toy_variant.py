"""A new variant is one file: this test declares a toy variant, registers it, runs a tiny experiment with it
through `find_tickets`, checks its mask, its starting weights and its rows against independent computations, and
unregisters it. Nothing outside this file knows the toy."""

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.variants import VARIANTS, Variant, register, variant_label, variant_names
from ticketlab.store import load_tensors, read_json

TOY = "smallest_magnitude"
NAMES = ["layers.1.weight", "layers.3.weight"]


@dataclass(frozen=True)
class SmallestMagnitude(Variant):
    """The dense run's final weights of *smallest* magnitude kept (one-shot pruning turned upside down), trained
    from the rewound weights (the default start)."""

    def mask(self, ctx, key):
        from ticketlab.lottery.masks import final_prunable_weights
        from ticketlab.pruning import keep_top

        final = final_prunable_weights(ctx, JobKey(key.trial, 0, DENSE))
        return keep_top({name: -weight.abs() for name, weight in final.items()}, ctx.keep_plan()[key.level])


def _config():
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="20it", eval_every="10it"),
        prune=PruneConfig(rate=0.5, levels=2),
        variants=("oneshot_reset", TOY),
    )


@contextmanager
def toy_registered():
    register(SmallestMagnitude(TOY, "smallest magnitudes kept", "smallest"))
    try:
        yield
    finally:
        VARIANTS.unregister(TOY)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data_for_module):
    with toy_registered():
        root = tmp_path_factory.mktemp("toy_variant")
        return find_tickets(_config(), root=root, data=tiny_data_for_module, progress=False, report=False)


def _tensors(run_dir, level, variant, name):
    return {key: value.numpy() for key, value in load_tensors(JobKey(0, level, variant).directory(run_dir)
                                                               / name).items()}


def test_the_toy_mask_keeps_the_smallest_dense_weights_at_one_shot_counts(finished):
    dense_final = _tensors(finished.run_dir, 0, DENSE, "weights_final.safetensors")
    for level in (1, 2):
        toy = _tensors(finished.run_dir, level, TOY, "mask.safetensors")
        oneshot = _tensors(finished.run_dir, level, "oneshot_reset", "mask.safetensors")
        for name in NAMES:
            count = int(oneshot[name].sum())  # the same keep plan: the same count per layer
            magnitudes = np.abs(dense_final[name]).ravel()
            expected = np.zeros(magnitudes.size, dtype=bool)
            expected[np.argsort(magnitudes, kind="stable")[:count]] = True
            assert np.array_equal(toy[name].ravel(), expected)


def test_the_toy_starts_from_the_masked_initial_weights_and_has_its_rows(finished):
    theta0 = _tensors(finished.run_dir, 0, DENSE, "weights_init.safetensors")
    for level in (1, 2):
        mask = _tensors(finished.run_dir, level, TOY, "mask.safetensors")
        start = _tensors(finished.run_dir, level, TOY, "weights_init.safetensors")
        for name in NAMES:
            assert np.array_equal(start[name], theta0[name] * mask[name])
        record = read_json(JobKey(0, level, TOY).directory(finished.run_dir) / "result.json")
        assert record["variant"] == TOY and record["start_step"] == 0
    rows = {(row["variant"], int(row["level"])): row for row in finished.rows}
    for level in (1, 2):
        assert rows[(TOY, level)]["weights_remaining_percent"] == rows[("oneshot_reset", level)][
            "weights_remaining_percent"]
    assert (TOY, 0) in rows  # level 0 of every variant is the dense job


def test_find_help_lists_the_toy_while_it_is_registered_and_refuses_it_after(capsys, tmp_path):
    with toy_registered():
        assert variant_names()[-1] == TOY and variant_label(TOY) == "smallest magnitudes kept"
        assert main(["find", "--help"]) == 0
        assert TOY in capsys.readouterr().out.replace("\n", " ")
    assert TOY not in variant_names()
    assert main(["find", "--variants", TOY, "--root", str(tmp_path)]) == 2
    assert f"unknown variants '{TOY}'; allowed: " in capsys.readouterr().err
