"""Layer densities (uniform, ER, ERK) against their formulas, worked by hand."""

import math

import pytest

from ticketlab.errors import ConfigError
from ticketlab.pruning.densities import layer_densities, layer_keep_counts

SHAPES = {"conv": (4, 1, 3, 3), "hidden": (100, 400), "out": (10, 100)}  # 36 + 40000 + 1000 weights
TOTAL = 36 + 40_000 + 1_000


def test_erk_matches_the_formula_with_the_small_conv_made_dense():
    # ERK raw densities: (sum of dims) / (product): conv 11/36, hidden 500/40000, out 110/1000. With ε over all
    # three, ε·11/36 = (0.1·41036)/(11+500+110)·11/36 ≈ 2.02 > 1, so the conv is dense and the others share the
    # rest.
    epsilon = (0.1 * TOTAL - 36) / (500 + 110)
    densities = layer_densities(SHAPES, 0.1, "erk")
    assert densities["conv"] == 1.0
    assert densities["hidden"] == pytest.approx(epsilon * 500 / 40_000)
    assert densities["out"] == pytest.approx(epsilon * 110 / 1_000)
    kept = sum(densities[name] * math.prod(shape) for name, shape in SHAPES.items())
    assert kept == pytest.approx(0.1 * TOTAL)


def test_erk_without_redistribution_and_er_ignoring_the_kernel():
    shapes = {"a": (64, 32), "b": (32, 16, 3, 3)}
    erk = layer_densities(shapes, 0.3, "erk")
    epsilon = 0.3 * (2048 + 4608) / ((96 / 2048) * 2048 + (54 / 4608) * 4608)
    assert erk == pytest.approx({"a": epsilon * 96 / 2048, "b": epsilon * 54 / 4608})
    er = layer_densities(shapes, 0.3, "er")  # ER: (n_out + n_in) / (n_out·n_in), kernel ignored
    epsilon = 0.3 * (2048 + 4608) / ((96 / 2048) * 2048 + (48 / 512) * 4608)
    assert er == pytest.approx({"a": epsilon * 96 / 2048, "b": epsilon * 48 / 512})
    densities = layer_densities(SHAPES, 0.5, "erk")  # two rounds of redistribution: conv, then out, dense
    assert densities["conv"] == densities["out"] == 1.0
    assert densities["hidden"] == pytest.approx((0.5 * TOTAL - 36 - 1_000) / 40_000)


def test_uniform_counts_and_bad_input():
    assert layer_densities(SHAPES, 0.2) == {name: 0.2 for name in SHAPES}
    assert layer_keep_counts(SHAPES, 0.2) == {"conv": 7, "hidden": 8000, "out": 200}
    assert layer_densities(SHAPES, 1.0, "erk") == {name: 1.0 for name in SHAPES}
    with pytest.raises(ConfigError, match="allowed: uniform, er, erk"):
        layer_densities(SHAPES, 0.2, "erdos")
    with pytest.raises(ConfigError, match="must be in"):
        layer_densities(SHAPES, 0.0, "erk")
