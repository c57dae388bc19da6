"""A SNIP mask recomputed from the README's description of its scoring batches alone (the seed by sha256, the
epoch permutations by torch.randperm, plain autograd and numpy ranking), without ticketlab's batch, seed or score
functions: the same mask, bit for bit."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets
from ticketlab.models import build_model
from ticketlab.store import load_tensors

SEED, BATCH, SCORE_BATCHES = 7, 200, 3  # 500 training examples: 2 batches an epoch, so batch 2 opens epoch 1
NAMES = ["layers.1.weight", "layers.3.weight", "layers.5.weight"]


def _derive_seed(base: int, *labels) -> int:
    """As documented: the first 8 bytes of sha256("base/label/..."), big-endian, shifted right by one bit."""
    text = "/".join([str(base), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def test_a_snip_mask_recomputed_from_the_documented_batches_is_the_stored_mask(tmp_path, tiny_data, one_thread):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(24, 12)), seed=SEED,
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=BATCH, steps="4it", eval_every="2it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=1, score_batches=SCORE_BATCHES),
        variants=("snip",), trials=1)
    result = find_tickets(config, root=tmp_path, data=tiny_data, progress=False, report=False, workers=1)
    job = result.run_dir / "trial_0" / "level_01" / "snip"
    stored = load_tensors(job / "mask.safetensors")
    theta0 = load_tensors(result.run_dir / "trial_0" / "level_00" / "dense" / "weights_init.safetensors")

    model = build_model("mlp", tiny_data.input_shape, tiny_data.num_classes, hidden=(24, 12))
    model.load_state_dict(theta0)
    model.train()
    parameters = dict(model.named_parameters())
    weights = [parameters[name] for name in NAMES]
    inputs, labels = tiny_data.x_train, tiny_data.y_train
    count = len(inputs)
    scoring_seed = _derive_seed(SEED, 0, "score_batches")
    gradient = [torch.zeros_like(weight) for weight in weights]
    for k in range(SCORE_BATCHES):
        epoch, position = divmod(k, count // BATCH)
        generator = torch.Generator().manual_seed(_derive_seed(scoring_seed, "epoch", epoch))
        order = torch.randperm(count, generator=generator)
        rows = order[position * BATCH:(position + 1) * BATCH]
        loss = F.cross_entropy(model(inputs[rows]), labels[rows])
        for total, part in zip(gradient, torch.autograd.grad(loss, weights)):
            total.add_(part)
    scores = np.concatenate([(g * w.detach()).abs().numpy().ravel() for g, w in zip(gradient, weights)])

    # the level's count: each layer keeps n - round(rate * n) (output layer 25%, others 50%), ranked globally
    sizes = [weight.numel() for weight in weights]
    keep = sum(n - round((0.25 if name == "layers.5.weight" else 0.5) * n) for name, n in zip(NAMES, sizes))
    ranked = np.sort(scores)[::-1]
    assert ranked[keep - 1] > ranked[keep]  # no tie at the cut: the mask is determined by the scores alone
    expected = scores >= ranked[keep - 1]
    got = np.concatenate([stored[name].numpy().astype(bool).ravel() for name in NAMES])
    assert got.sum() == keep
    np.testing.assert_array_equal(got, expected)
