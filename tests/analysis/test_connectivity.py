"""Linear interpolation, path evaluation, the barrier and BatchNorm recomputation, against numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ticketlab.analysis.connectivity import (
    barrier,
    evaluate_path,
    interpolate_states,
    interpolation_alphas,
    recompute_batchnorm,
)
from ticketlab.analysis.distance import weight_distance
from ticketlab.errors import ConfigError
from ticketlab.models import initialize


def numpy_cross_entropy_and_error(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    error = float(np.mean(logits.argmax(axis=1) != labels))
    return float(loss), error


def numpy_barrier(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.max() - 0.5 * (values[0] + values[-1]))


def seeded(model: nn.Module, seed: int) -> nn.Module:
    return initialize(model, "glorot_normal", seed)


def test_barrier_is_max_minus_mean_of_ends():
    assert barrier([0.1, 0.3, 0.2]) == pytest.approx(0.3 - 0.15)
    assert barrier([0.2, 0.1, 0.2]) == 0.0
    assert barrier([0.4, 0.1]) == pytest.approx(0.4 - 0.25)  # a worse endpoint is part of the path
    with pytest.raises(ConfigError):
        barrier([0.1])
    assert interpolation_alphas(5) == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert len(interpolation_alphas()) == 30
    with pytest.raises(ConfigError, match="points 1"):
        interpolation_alphas(1)


def test_interpolation_endpoints_are_bitwise_exact():
    state_a = seeded(nn.Linear(5, 4), 1).state_dict()
    state_b = seeded(nn.Linear(5, 4), 2).state_dict()
    for name in state_a:
        assert torch.equal(interpolate_states(state_a, state_b, 0.0)[name], state_a[name])
        assert torch.equal(interpolate_states(state_a, state_b, 1.0)[name], state_b[name])
    middle = interpolate_states(state_a, state_b, 0.3)
    torch.testing.assert_close(middle["weight"], 0.7 * state_a["weight"] + 0.3 * state_b["weight"])


@pytest.mark.parametrize("batchnorm", [False, True])
def test_identical_networks_have_zero_barrier_and_zero_distance(batchnorm):
    layers = [nn.Linear(6, 16)] + ([nn.BatchNorm1d(16)] if batchnorm else []) + [nn.ReLU(), nn.Linear(16, 3)]
    model = seeded(nn.Sequential(*layers), 3)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    inputs = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(1))
    path = evaluate_path(model, state, state, {"train": (inputs, labels), "test": (inputs[:50], labels[:50])},
                         points=9, batchnorm_inputs=inputs if batchnorm else None)
    for split in ("train", "test"):
        assert path.barriers[split] == 0.0
        assert path.loss_barriers()[split] == 0.0
        assert len(set(path.errors[split])) == 1 and len(set(path.losses[split])) == 1
    assert path.batchnorm_recomputed is batchnorm
    distance = weight_distance(state, state)
    assert (distance.l2, distance.relative, distance.angle_degrees) == (0.0, 0.0, 0.0)
    for name, value in model.state_dict().items():  # evaluation leaves the given model alone
        assert torch.equal(value, state[name])


def test_permuted_hidden_units_match_a_hand_computation():
    """B is A with its hidden units permuted (the same function); the path between them is computed by hand."""
    w1 = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.25]])
    b1 = np.array([0.1, -0.2, 0.3])
    w2 = np.array([[2.0, -1.0, 0.5], [-1.5, 1.0, 2.0]])
    b2 = np.array([0.05, -0.05])
    order = [2, 0, 1]
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))

    def state(a1, c1, a2, c2):
        return {"0.weight": torch.tensor(a1, dtype=torch.float32), "0.bias": torch.tensor(c1, dtype=torch.float32),
                "2.weight": torch.tensor(a2, dtype=torch.float32), "2.bias": torch.tensor(c2, dtype=torch.float32)}

    state_a = state(w1, b1, w2, b2)
    state_b = state(w1[order], b1[order], w2[:, order], b2)
    inputs = np.random.default_rng(0).normal(size=(64, 2))
    x = torch.tensor(inputs, dtype=torch.float32)
    model.load_state_dict(state_a)
    outputs_a = model(x).detach()
    model.load_state_dict(state_b)
    torch.testing.assert_close(model(x).detach(), outputs_a)  # a permutation does not change the function
    labels = outputs_a.argmax(1).numpy()  # the endpoints make no error

    path = evaluate_path(model, state_a, state_b, {"train": (x, torch.tensor(labels))}, points=5)

    hand_losses, hand_errors = [], []
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        mix = {name: (1 - alpha) * state_a[name].double().numpy() + alpha * state_b[name].double().numpy()
               for name in state_a}
        hidden = np.maximum(inputs @ mix["0.weight"].T + mix["0.bias"], 0.0)
        loss, error = numpy_cross_entropy_and_error(hidden @ mix["2.weight"].T + mix["2.bias"], labels)
        hand_losses.append(loss)
        hand_errors.append(error)
    np.testing.assert_allclose(path.losses["train"], hand_losses, rtol=1e-5)
    assert list(path.errors["train"]) == pytest.approx(hand_errors, abs=1e-12)
    assert path.errors["train"][0] == path.errors["train"][-1]
    assert path.barriers["train"] == pytest.approx(numpy_barrier(hand_errors), abs=1e-12)
    assert path.loss_barriers()["train"] == pytest.approx(numpy_barrier(hand_losses), rel=1e-5)
    assert path.barriers["train"] > 0 and path.loss_barriers()["train"] > 0  # averaged units: a worse network

    difference = np.concatenate([(w1 - w1[order]).ravel(), (w2 - w2[:, order]).ravel()])
    flat = np.concatenate([w1.ravel(), w2.ravel()])  # the permuted vector has the same norm
    distance = weight_distance(state_a, state_b, names=["0.weight", "2.weight"])
    assert distance.l2 == pytest.approx(np.linalg.norm(difference), rel=1e-6)
    assert distance.relative == pytest.approx(np.linalg.norm(difference) / np.linalg.norm(flat), rel=1e-6)
    cosine = flat @ np.concatenate([w1[order].ravel(), w2[:, order].ravel()]) / (flat @ flat)
    assert distance.angle_degrees == pytest.approx(np.degrees(np.arccos(cosine)), rel=1e-6)


def test_convex_problem_has_zero_barrier():
    """Two different separating linear classifiers: every classifier between them separates too (a convex set)."""
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(300, 2))
    inputs = inputs[np.abs(inputs[:, 0] + 0.5 * inputs[:, 1]) > 0.3]  # a margin around the true boundary
    labels = (inputs[:, 0] + 0.5 * inputs[:, 1] > 0).astype(np.int64)
    weights = {  # logit(class 1) - logit(class 0) = w . x; both separate the data with a margin
        "a": np.array([[-1.0, -0.5], [1.0, 0.5]]) * 3.0,
        "b": np.array([[-0.2, -0.15], [1.4, 0.65]]),
    }
    states = {key: {"weight": torch.tensor(value, dtype=torch.float32), "bias": torch.zeros(2)}
              for key, value in weights.items()}
    path = evaluate_path(nn.Linear(2, 2), states["a"], states["b"],
                         {"train": (torch.tensor(inputs, dtype=torch.float32), torch.tensor(labels))}, points=11)

    numpy_errors, numpy_losses = [], []
    for alpha in np.linspace(0, 1, 11):
        loss, error = numpy_cross_entropy_and_error(inputs @ ((1 - alpha) * weights["a"] + alpha * weights["b"]).T,
                                                    labels)
        numpy_errors.append(error)
        numpy_losses.append(loss)
    assert numpy_errors == [0.0] * 11 and numpy_barrier(numpy_errors) == 0.0
    assert path.barriers["train"] == 0.0
    np.testing.assert_allclose(path.losses["train"], numpy_losses, rtol=1e-5)
    # cross-entropy is convex in the weights: the path never rises above the chord between the ends
    chord = np.linspace(numpy_losses[0], numpy_losses[-1], 11)
    assert np.all(np.asarray(path.losses["train"]) <= chord + 1e-6)


def test_two_basin_problem_has_a_barrier():
    """f(x) = w2 * w1 * x - 0.5 decides the class; (1, 1) and (-1, -1) are two basins of the same function."""
    inputs = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    labels = torch.tensor([1, 1, 0, 0])
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 2))

    def state(sign: float):
        return {"0.weight": torch.tensor([[sign]]), "1.weight": torch.tensor([[0.0], [sign]]),
                "1.bias": torch.tensor([0.5, 0.0])}

    path = evaluate_path(model, state(1.0), state(-1.0), {"train": (inputs, labels)}, points=21)

    x, y = inputs.numpy(), labels.numpy()
    numpy_errors, numpy_losses = [], []
    for alpha in np.linspace(0, 1, 21):
        w = 1.0 - 2.0 * alpha  # both weights move from 1 to -1
        logits = np.concatenate([np.full_like(x, 0.5), w * w * x], axis=1)
        loss, error = numpy_cross_entropy_and_error(logits, y)
        numpy_errors.append(error)
        numpy_losses.append(loss)
    assert numpy_errors[0] == numpy_errors[-1] == 0.0
    assert numpy_barrier(numpy_errors) == 0.5  # the middle misclassifies every positive example
    assert list(path.errors["train"]) == numpy_errors
    assert path.barriers["train"] == 0.5
    np.testing.assert_allclose(path.losses["train"], numpy_losses, rtol=1e-6)
    assert path.loss_barriers()["train"] == pytest.approx(numpy_barrier(numpy_losses), rel=1e-6)


def test_batchnorm_statistics_are_recomputed_exactly():
    """Running stats equal a numpy replay of the chunked forward pass (BatchNorm in training mode)."""
    torch.manual_seed(0)
    model = seeded(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2),
                                 nn.BatchNorm1d(2)), 5)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.5, 0.5, 1.0, 2.0]))
        model[1].bias.copy_(torch.tensor([0.1, -0.3, 0.2, 0.0]))
    parameters = {name: value.clone() for name, value in model.named_parameters()}
    inputs = torch.randn(50, 3, generator=torch.Generator().manual_seed(2))
    recompute_batchnorm(model, inputs, batch_size=10)

    p = {name: value.detach().double().numpy() for name, value in parameters.items()}
    x = inputs.double().numpy()
    first, second = [], []
    for start in range(0, 50, 10):
        z1 = x[start : start + 10] @ p["0.weight"].T + p["0.bias"]
        first.append(z1)
        normalized = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + model[1].eps)  # batch statistics, biased variance
        hidden = np.maximum(normalized * p["1.weight"] + p["1.bias"], 0.0)
        second.append(hidden @ p["3.weight"].T + p["3.bias"])
    for layer, values in ((model[1], np.concatenate(first)), (model[4], np.concatenate(second))):
        np.testing.assert_allclose(layer.running_mean.numpy(), values.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.running_var.numpy(), values.var(0, ddof=1), rtol=1e-5, atol=1e-6)
    for name, value in model.named_parameters():  # statistics only: no parameter moved
        assert torch.equal(value, parameters[name])
    assert model.training  # the mode it had before


def test_path_ignores_stored_batchnorm_statistics():
    """Each point is evaluated with statistics recomputed from the inputs, whatever the state dicts hold."""
    model = seeded(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)), 7)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    garbage = dict(state)
    garbage["1.running_mean"] = torch.full((8,), 50.0)
    garbage["1.running_var"] = torch.full((8,), 1e-4)
    inputs = torch.randn(120, 4, generator=torch.Generator().manual_seed(3))
    labels = (inputs[:, 0] > 0).long()
    splits = {"train": (inputs, labels)}
    clean = evaluate_path(model, state, state, splits, points=3, batchnorm_inputs=inputs)
    dirty = evaluate_path(model, state, garbage, splits, points=3, batchnorm_inputs=inputs)
    assert dirty.losses == clean.losses and dirty.errors == clean.errors
    with pytest.raises(ConfigError, match="BatchNorm"):
        evaluate_path(model, state, state, splits, points=3)


def test_mismatched_states_are_user_errors():
    state_a = nn.Linear(3, 2).state_dict()
    with pytest.raises(ConfigError, match="different tensors"):
        interpolate_states(state_a, {"weight": state_a["weight"]}, 0.5)
    with pytest.raises(ConfigError, match="shape"):
        interpolate_states(state_a, nn.Linear(4, 2).state_dict(), 0.5)
