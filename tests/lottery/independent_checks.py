"""Checks the variant tests share: an independent numpy recomputation of a magnitude mask, and the comparison of a
stacked population's results.csv rows with those of the same jobs trained alone."""

from __future__ import annotations

import numpy as np
import pytest


def top_magnitudes(weights, count, eligible=None):
    """The `count` largest |weights| (ties to the earlier index), among `eligible` (> 0) where given, as a bool
    array of weights' shape."""
    magnitudes = np.abs(weights).ravel().astype(np.float64)
    if eligible is not None:
        magnitudes = np.where(eligible.ravel() > 0, magnitudes, -np.inf)
    keep = np.zeros(magnitudes.size, dtype=bool)
    keep[np.argsort(-magnitudes, kind="stable")[:count]] = True
    return keep.reshape(weights.shape)


def assert_rows_match(rows, reference_rows, tolerance=1e-4):
    """The same rows and columns; floats within `tolerance` (stacked kernels round sizes that are not a SIMD
    multiple apart at ~1e-8 a step), everything else equal."""
    assert len(rows) == len(reference_rows)
    for row, reference in zip(rows, reference_rows):
        assert row.keys() == reference.keys()
        for column, value in reference.items():
            expected = pytest.approx(value, abs=tolerance) if isinstance(value, float) else value
            assert row[column] == expected, column
