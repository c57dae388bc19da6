"""MNIST-1D (Greydanus 2020), generated locally by the `mnist1d` package: no download."""

from __future__ import annotations

import contextlib
import random

import numpy as np


def generate_mnist1d(seed: int = 42) -> dict[str, np.ndarray]:
    """The standard MNIST-1D split (4,000 train / 1,000 test, 40 features), as the package makes it.

    `mnist1d` seeds the global numpy and `random` RNGs; the caller's states are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    with _preserved_global_rngs():
        dataset = make_dataset(args)
    return {
        "x_train": dataset["x"].astype(np.float32),
        "y_train": dataset["y"].astype(np.int64),
        "x_test": dataset["x_test"].astype(np.float32),
        "y_test": dataset["y_test"].astype(np.int64),
    }


@contextlib.contextmanager
def _preserved_global_rngs():
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
