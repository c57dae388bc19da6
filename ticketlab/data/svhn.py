"""SVHN (cropped digits, 32x32) from the official train_32x32.mat / test_32x32.mat files.

The .mat files are MATLAB v5 arrays read with scipy.io.loadmat (no pickle). Label 10 means digit 0 and is
mapped to 0. Files come from a user-given directory (no checksum), else the cache, else a checked download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ticketlab.data.download import cached_or_download
from ticketlab.data.mnist import resolve_cache_root
from ticketlab.errors import DataError

# md5 values as published with torchvision's SVHN dataset class.
SVHN_CHECKSUMS = {
    "train_32x32.mat": "md5:e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "md5:eb5a983be6a315427106f1b164d9cef3",
}
SVHN_BASE_URLS = ("http://ufldl.stanford.edu/housenumbers/",)


def load_svhn(
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    base_urls: tuple[str, ...] | None = None,
    checksums: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """SVHN as numpy: train_images/test_images uint8 [N, 3, 32, 32], train_labels/test_labels int64 in 0..9."""
    arrays = {}
    for split in ("train", "test"):
        file_name = f"{split}_32x32.mat"
        if data_dir is not None:
            path = Path(data_dir).expanduser() / file_name
            if not path.is_file():
                raise DataError(f"data directory {data_dir} is missing {file_name}")
        else:
            checksum = (checksums or {}).get(file_name, SVHN_CHECKSUMS[file_name])
            path = cached_or_download("svhn", file_name, checksum, base_urls or SVHN_BASE_URLS,
                                      resolve_cache_root(cache_dir) / "svhn", download)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _read_mat(path)
    return arrays


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        content = loadmat(str(path))
        images, labels = content["X"], content["y"]
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise DataError(f"{path} is not an SVHN .mat file with 'X' and 'y' ({error})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: expected uint8 X of shape (32, 32, 3, N), found {images.dtype} {images.shape}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != images.shape[3] or labels.min() < 1 or labels.max() > 10:
        raise DataError(f"{path}: expected {images.shape[3]} labels in 1..10")
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels % 10
