"""Loaders for MNIST and Fashion-MNIST from their four standard IDX files.

Files are looked up, in order, in a user-given directory, in system dataset
directories (the Debian ``fashion-mnist`` package for Fashion-MNIST), in the
ticketlab cache, and finally downloaded into the cache from known mirrors
with checksum verification.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence, Union

import numpy as np

from ticketlab.data.idx import read_idx
from ticketlab.errors import ConfigError, DataError

PathLike = Union[str, os.PathLike]

IMAGE_SIDE = 28
NUM_CLASSES = 10

# Output key -> standard (gzip) file name.
FILE_NAME_BY_KEY: Mapping[str, str] = MappingProxyType(
    {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
)


@dataclass(frozen=True)
class MnistLikeFiles:
    """Where a MNIST-format dataset is published: checksums per file name and mirror base URLs."""

    checksums: Mapping[str, str]
    base_urls: tuple[str, ...]


# Checksums are the md5 values torchvision (torchvision/datasets/mnist.py) uses for the
# original gzip files.
MNIST_FILES: Mapping[str, MnistLikeFiles] = MappingProxyType(
    {
        "mnist": MnistLikeFiles(
            checksums=MappingProxyType(
                {
                    "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
                    "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
                    "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
                }
            ),
            base_urls=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
        ),
        "fashion_mnist": MnistLikeFiles(
            checksums=MappingProxyType(
                {
                    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
                    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
                    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
                }
            ),
            base_urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ),
    }
)

# Directory installed by the Debian/Ubuntu package "dataset-fashion-mnist" (recompressed files,
# so their md5 differs from upstream; they are validated by parsing instead).
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

DEFAULT_SYSTEM_DIRS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"mnist": (), "fashion_mnist": (FASHION_MNIST_SYSTEM_DIR,)}
)

CACHE_ENV_VAR = "TICKETLAB_CACHE"

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"  # Debian/Ubuntu: installs FASHION_MNIST_SYSTEM_DIR


def where_to_get(name: str, *, offer_download: bool = True) -> str:
    """How to get a dataset's missing files: the end of a one-line DataError (the Debian package for
    Fashion-MNIST, a download while one may help, a directory of one's own)."""
    ways = [f"install them with `apt-get install {FASHION_MNIST_PACKAGE}`"] if name == "fashion_mnist" else []
    if offer_download:
        ways.append("allow the download (--data.download true; needs the network)")
    ways.append("put the four files in a local directory and pass it as --data-dir DIR (data.data_dir)")
    return ", or ".join(ways)


def resolve_cache_root(cache_dir: PathLike | None = None) -> Path:
    """Return the ticketlab cache root: ``cache_dir``, else $TICKETLAB_CACHE, else ~/.cache/ticketlab."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get(CACHE_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "ticketlab"


def load_mnist_like(
    name: str,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    download: bool = True,
    base_urls: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    system_dirs: Sequence[PathLike] | None = None,
) -> dict[str, np.ndarray]:
    """Load MNIST or Fashion-MNIST as numpy arrays.

    Args:
        name: "mnist" or "fashion_mnist".
        data_dir: directory holding the four files (``.gz`` or uncompressed); when given,
            it is the only place looked at (no download, no checksum check).
        cache_dir: cache root (files go to ``<cache_dir>/<name>``); default $TICKETLAB_CACHE,
            else ~/.cache/ticketlab.
        download: fetch files missing from the cache.
        base_urls: mirror base URLs tried in order; default the dataset's known mirrors.
        checksums: file name -> "md5:<hex>" overrides of the known checksums.
        system_dirs: system directories searched before the cache (no checksum check);
            default ``DEFAULT_SYSTEM_DIRS[name]``.

    Returns:
        dict with ``train_images``/``test_images`` (uint8, N x 28 x 28) and
        ``train_labels``/``test_labels`` (int64, N, values 0..9).

    Raises:
        ConfigError: unknown name or malformed checksum overrides.
        DataError: files missing, corrupt, failing their checksum, or not downloadable.
    """
    if name not in MNIST_FILES:
        raise ConfigError(f"unknown MNIST-like dataset {name!r}; expected one of: {', '.join(MNIST_FILES)}")
    if data_dir is not None:
        return _load_validated(_files_in_user_dir(Path(data_dir).expanduser(), name))

    search_dirs = DEFAULT_SYSTEM_DIRS[name] if system_dirs is None else tuple(system_dirs)
    for system_dir in search_dirs:
        system_paths = _complete_files_in_dir(Path(system_dir))
        if system_paths is not None:
            return _load_validated(system_paths)

    expected_checksums = _merge_checksums(MNIST_FILES[name].checksums, checksums)
    mirror_urls = tuple(MNIST_FILES[name].base_urls if base_urls is None else base_urls)
    dataset_cache = resolve_cache_root(cache_dir) / name
    paths_by_key: dict[str, Path] = {}
    for key, file_name in FILE_NAME_BY_KEY.items():
        cached_path = dataset_cache / file_name
        known_hash = expected_checksums[file_name]
        if cached_path.is_file() and _file_hash(cached_path, known_hash) == known_hash.lower():
            paths_by_key[key] = cached_path
            continue
        if not download:
            problem = "fails its checksum" if cached_path.is_file() else "is missing"
            raise DataError(f"{name} file {cached_path} {problem} and download is disabled; {where_to_get(name)}")
        paths_by_key[key] = _download_file(name, file_name, known_hash, mirror_urls, dataset_cache)
    return _load_validated(paths_by_key)


def _candidate_names(file_name: str) -> tuple[str, str]:
    """The gzip name and its uncompressed variant (without '.gz')."""
    return file_name, file_name[: -len(".gz")]


def _complete_files_in_dir(directory: Path) -> dict[str, Path] | None:
    """Paths of all four files in ``directory`` (either naming), or None if any is absent."""
    paths_by_key: dict[str, Path] = {}
    for key, file_name in FILE_NAME_BY_KEY.items():
        found = next((directory / c for c in _candidate_names(file_name) if (directory / c).is_file()), None)
        if found is None:
            return None
        paths_by_key[key] = found
    return paths_by_key


def _files_in_user_dir(directory: Path, name: str = "mnist") -> dict[str, Path]:
    """Paths of the four files in a user-given directory; DataError naming what is missing."""
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist or is not a directory")
    paths = _complete_files_in_dir(directory)
    if paths is None:
        missing = [
            file_name
            for file_name in FILE_NAME_BY_KEY.values()
            if not any((directory / c).is_file() for c in _candidate_names(file_name))
        ]
        gz_name, plain_name = _candidate_names(missing[0])
        raise DataError(
            f"data directory {directory} is missing {gz_name} (or uncompressed {plain_name})"
            + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
            + (f"; {where_to_get(name, offer_download=False)}" if name == "fashion_mnist" else "")
        )
    return paths


def _merge_checksums(defaults: Mapping[str, str], overrides: Mapping[str, str] | None) -> dict[str, str]:
    """Known checksums with user overrides applied; ConfigError on unknown file names or bad format."""
    merged = dict(defaults)
    for file_name, checksum in (overrides or {}).items():
        if file_name not in defaults:
            raise ConfigError(
                f"checksum given for unknown file {file_name!r}; expected one of: {', '.join(defaults)}"
            )
        algorithm, _, digest = checksum.partition(":")
        if algorithm.lower() not in hashlib.algorithms_guaranteed or not digest:
            raise ConfigError(f"checksum for {file_name} must look like 'md5:<hex digest>', got {checksum!r}")
        merged[file_name] = checksum
    return merged


def _file_hash(path: Path, known_hash: str) -> str:
    """Hash of ``path`` as '<alg>:<hex>' using the algorithm named in ``known_hash``."""
    algorithm = known_hash.partition(":")[0].lower()
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def _short_reason(exc: Exception) -> str:
    """A short single-line description of a download failure."""
    response = getattr(exc, "response", None)
    status_code = getattr(response, "status_code", None)
    if status_code is not None:
        return f"HTTP {status_code}"
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "checksum mismatch"
    error_kind = type(exc).__name__  # requests' exception names, without importing requests
    if "Timeout" in error_kind:
        return "timed out"
    if "ConnectionError" in error_kind:
        return "connection failed"
    return " ".join(str(exc).split()) or type(exc).__name__


def _download_file(
    dataset_name: str, file_name: str, known_hash: str, base_urls: Sequence[str], target_dir: Path
) -> Path:
    """Fetch ``file_name`` into ``target_dir`` from the first mirror that serves it with the right checksum."""
    import pooch  # imported lazily: only needed when downloading

    failures: list[str] = []
    for base_url in base_urls:
        url = base_url.rstrip("/") + "/" + file_name
        try:
            fetched = pooch.retrieve(
                url, known_hash=known_hash, path=target_dir, fname=file_name, progressbar=False
            )
        except (OSError, ValueError, RuntimeError) as exc:  # requests errors are OSErrors
            failures.append(f"{url} ({_short_reason(exc)})")
            continue
        return Path(fetched)
    tried = "; ".join(failures) if failures else "no mirror URLs given"
    raise DataError(f"could not fetch {dataset_name} file {file_name} from: {tried}; "
                    f"{where_to_get(dataset_name, offer_download=False)}")


def _load_validated(paths_by_key: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Read the four IDX files and check dtypes, shapes, counts and label range."""
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images_path, labels_path = paths_by_key[f"{split}_images"], paths_by_key[f"{split}_labels"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataError(
                f"bad images file {images_path}: expected uint8 array of shape (N, {IMAGE_SIDE}, {IMAGE_SIDE}), "
                f"found {images.dtype} array of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(
                f"bad labels file {labels_path}: expected 1-D uint8 array, "
                f"found {labels.dtype} array of shape {labels.shape}"
            )
        if len(labels) != len(images):
            raise DataError(
                f"labels file {labels_path} has {len(labels)} labels "
                f"but images file {images_path} has {len(images)} images"
            )
        if len(labels) and int(labels.max()) >= NUM_CLASSES:
            raise DataError(
                f"bad labels file {labels_path}: labels must be in 0..{NUM_CLASSES - 1}, found {int(labels.max())}"
            )
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    return arrays
