"""Class subsets (relabelled 0..k-1) and image resizing / re-channelling, checked against numpy."""

import numpy as np
import pytest
import torch

from ticketlab.config import DataConfig, ExperimentConfig, parse_classes
from ticketlab.data.splits import make_splits
from ticketlab.data.subsets import reshape_images, select_classes
from ticketlab.errors import ConfigError


def splits(shape=(4, 4), count=60, classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(count, *shape, generator=generator)
    labels = torch.randint(0, classes, (count,), generator=generator)
    return make_splits(inputs[:40], labels[:40], inputs[40:], labels[40:], validation_size=10, num_classes=classes)


def test_parse_classes():
    assert parse_classes("0-4") == (0, 1, 2, 3, 4)
    assert parse_classes(" 7, 2-3 ,9") == (7, 2, 3, 9)
    for text, message in (("4-0", "runs backwards"), ("1,1", "more than once"), ("3", "at least 2"),
                          ("a-b", "item 'a-b'"), ("", "must list")):
        with pytest.raises(ConfigError, match=message):
            parse_classes(text)
    with pytest.raises(ConfigError, match="data.classes item"):
        ExperimentConfig().replace(**{"data.classes": "0-x"})


def test_new_data_fields_keep_old_hashes_and_name_the_run():
    config = ExperimentConfig()
    assert config.replace(**{"data.classes": None}).hash() == config.hash()
    subset = config.replace(**{"data.classes": "5-9"})
    assert subset.hash() != config.hash() and subset.run_name().startswith("mnist1d-c5-9_mlp_")
    with pytest.raises(ConfigError, match="data.channels 2 must be 1 or 3"):
        config.replace(**{"data.channels": 2})


def test_select_classes_relabels_in_the_order_given():
    data = splits()
    subset = select_classes(data, (7, 2, 5))
    assert subset.num_classes == 3
    for split in ("train", "val", "test"):
        labels = getattr(data, f"y_{split}").numpy()
        keep = np.isin(labels, [7, 2, 5])
        expected = np.array([{7: 0, 2: 1, 5: 2}[label] for label in labels[keep]])
        np.testing.assert_array_equal(getattr(subset, f"y_{split}").numpy(), expected)
        np.testing.assert_array_equal(getattr(subset, f"x_{split}").numpy(), getattr(data, f"x_{split}").numpy()[keep])
    with pytest.raises(ConfigError, match="data.classes 10 is outside the classes 0-9 of toy"):
        select_classes(data, (1, 10), "toy")


def test_reshape_images():
    data = splits(shape=(3, 4, 4))
    gray = reshape_images(data, None, 1)
    np.testing.assert_allclose(gray.x_train.numpy(), data.x_train.numpy().mean(axis=1, keepdims=True), rtol=1e-6)
    mono = splits(shape=(4, 4))
    color = reshape_images(mono, 8, 3)
    assert color.x_test.shape == (20, 3, 8, 8)
    assert torch.equal(color.x_test[:, 0], color.x_test[:, 2])
    # bilinear 2x upsampling, half-pixel centres: the inner pixels are 3:1 blends of their neighbours
    row = mono.x_test[0, 0].numpy()  # output row 0 samples input row 0 (clamped at the edge)
    blends = np.column_stack([0.75 * row[:3] + 0.25 * row[1:], 0.25 * row[:3] + 0.75 * row[1:]])
    np.testing.assert_allclose(color.x_test[0, 0, 0, 1:7].numpy(), blends.ravel(), rtol=1e-5)
    assert reshape_images(mono, 4, None).x_train.shape == (30, 4, 4)
    with pytest.raises(ConfigError, match="applies to image data"):
        reshape_images(splits(shape=(40,)), 8, None)


def test_load_dataset_applies_the_subset(tmp_path):
    from ticketlab.data import load_dataset

    data = load_dataset(DataConfig(name="mnist1d", validation_size=500, classes="3,8"))
    assert data.num_classes == 2 and set(data.y_train.tolist()) == {0, 1} and len(data.x_test) < 1000
