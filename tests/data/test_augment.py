"""pad_crop_flip against a per-image numpy recomputation; determinism from the seed."""

import numpy as np
import torch

from ticketlab.data.augment import channel_mean_std, pad_crop_flip


def test_same_seed_same_output_and_different_seed_differs():
    batch = torch.randn(16, 3, 8, 8)
    assert torch.equal(pad_crop_flip(batch, seed=5), pad_crop_flip(batch, seed=5))
    assert not torch.equal(pad_crop_flip(batch, seed=5), pad_crop_flip(batch, seed=6))


def test_each_crop_is_a_shifted_copy_with_zero_padding():
    batch = torch.arange(40 * 2 * 6 * 5, dtype=torch.float32).reshape(40, 2, 6, 5) + 1  # no zeros inside
    out = pad_crop_flip(batch, seed=11, padding=2).numpy()
    images = batch.numpy()
    flips = 0
    for index in range(len(images)):
        matches = []
        for flip in (False, True):
            source = images[index][:, :, ::-1] if flip else images[index]
            padded = np.pad(source, ((0, 0), (2, 2), (2, 2)))
            for dy in range(5):
                for dx in range(5):
                    if np.array_equal(padded[:, dy:dy + 6, dx:dx + 5], out[index]):
                        matches.append((flip, dy, dx))
        assert matches, f"image {index} is not a padded shift of its input"
        flips += matches[0][0]
    assert 5 < flips < 35  # about half the images are mirrored


def test_no_flip_keeps_orientation_and_mnist_shape_works():
    batch = torch.rand(30, 28, 28) + 1
    out = pad_crop_flip(batch, seed=3, padding=4, flip=False)
    assert out.shape == batch.shape
    # without flips, the centre 20x20 of the output is an unflipped window of the input
    for index in range(30):
        window = out[index, 4:24, 4:24].numpy()
        image = batch[index].numpy()
        assert any(np.array_equal(image[r:r + 20, c:c + 20], window) for r in range(9) for c in range(9))


def test_channel_statistics_match_numpy():
    images = torch.rand(10, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    mean, std = channel_mean_std(images)
    np.testing.assert_allclose(mean.numpy(), images.numpy().mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), images.numpy().std(axis=(0, 2, 3), ddof=1), rtol=1e-5)


def test_non_image_batches_are_a_config_error():
    import pytest

    from ticketlab.errors import ConfigError

    with pytest.raises(ConfigError, match="image batches"):
        pad_crop_flip(torch.zeros(4, 40), seed=0)
