"""A GraSP mask recomputed independently: the scoring batches as documented, g and Hg of the cross-entropy of the
logits divided by prune.grasp_temperature (Wang et al.'s code: both passes tempered) by torch.func and
torch.autograd.functional.hvp instead of ticketlab's double backward, ranked in numpy: the stored mask. The plain
loss (temperature 1) ranks the weights differently, so the test sees whether the temperature is applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import hvp
from torch.func import functional_call

from ticketlab.api import find_tickets
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError
from ticketlab.models import build_model
from ticketlab.seeds import derive_seed
from ticketlab.store import load_tensors
from ticketlab.training.batches import batch_indices

SEED, BATCH, SCORE_BATCHES, TEMPERATURE = 3, 200, 3, 200.0
NAMES = ["layers.1.weight", "layers.3.weight", "layers.5.weight"]


def _independent_scores(model, data, temperature: float) -> np.ndarray:
    """θ ⊙ Hg over the documented scoring batches, H and g of the summed tempered cross-entropy."""
    model.train()
    fixed = {name: tensor.detach() for name, tensor in model.named_parameters() if name not in NAMES}
    theta = tuple(dict(model.named_parameters())[name].detach().clone() for name in NAMES)
    scoring_seed = derive_seed(SEED, 0, "score_batches")
    batches = [batch_indices(k, len(data.x_train), BATCH, scoring_seed) for k in range(SCORE_BATCHES)]
    inputs = data.x_train.to(theta[0].dtype)

    def loss(*weights):
        parameters = {**fixed, **dict(zip(NAMES, weights))}
        return sum(F.cross_entropy(functional_call(model, parameters, (inputs[rows],)) / temperature,
                                   data.y_train[rows]) for rows in batches)

    variables = [weight.clone().requires_grad_() for weight in theta]
    gradient = torch.autograd.grad(loss(*variables), variables)
    _, product = hvp(loss, theta, gradient)
    return np.concatenate([(h * w).detach().numpy().ravel() for h, w in zip(product, theta)])


def test_a_grasp_mask_is_the_tempered_hessian_gradient_product_ranked(tmp_path, tiny_data, one_thread):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(24, 12)), seed=SEED,
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=BATCH, steps="2it", eval_every="2it"),
        prune=PruneConfig(rate=0.5, output_rate=0.25, levels=1, score_batches=SCORE_BATCHES),
        variants=("grasp",), trials=1)
    assert config.prune.grasp_temperature == TEMPERATURE  # the default is Wang et al.'s T
    result = find_tickets(config, root=tmp_path, data=tiny_data, progress=False, report=False, workers=1)
    stored = load_tensors(result.run_dir / "trial_0" / "level_01" / "grasp" / "mask.safetensors")
    theta0 = load_tensors(result.run_dir / "trial_0" / "level_00" / "dense" / "weights_init.safetensors")
    model = build_model("mlp", tiny_data.input_shape, tiny_data.num_classes, hidden=(24, 12))
    model.load_state_dict(theta0)

    sizes = [stored[name].numel() for name in NAMES]
    keep = sum(n - round((0.25 if name == NAMES[-1] else 0.5) * n) for name, n in zip(NAMES, sizes))
    got = np.concatenate([stored[name].numpy().astype(bool).ravel() for name in NAMES])
    assert got.sum() == keep

    masks = {}
    for temperature in (TEMPERATURE, 1.0):
        scores = _independent_scores(model.double(), tiny_data, temperature)
        ranked = np.sort(scores)[::-1]
        masks[temperature] = scores >= ranked[keep - 1]
        if temperature == TEMPERATURE:  # the gap at the cut is far above float32 rounding (~1e-7 of the largest)
            assert ranked[keep - 1] - ranked[keep] > 1e-5 * np.abs(ranked).max()
    np.testing.assert_array_equal(got, masks[TEMPERATURE])
    assert (masks[1.0] != masks[TEMPERATURE]).sum() > 0.05 * keep  # the temperature changes which weights survive


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "hot"])
def test_a_temperature_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(ConfigError, match="prune.grasp_temperature .* must be a finite number > 0"):
        PruneConfig(grasp_temperature=value).validate()
