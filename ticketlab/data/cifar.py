"""CIFAR-10 and CIFAR-100 from the official *binary* archives (fixed-length records; no pickle is ever loaded).

The archive is looked for in a user-given directory (no checksum: the archive itself, or its extracted folder),
else in the cache, else downloaded once into the cache with its md5 checked. Members are read from the tar
stream into memory; nothing is extracted to disk, so member paths cannot escape anywhere.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ticketlab.data.download import cached_or_download
from ticketlab.data.mnist import resolve_cache_root
from ticketlab.errors import ConfigError, DataError

IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarArchive:
    """Layout of one binary CIFAR archive. Records are `label_bytes` label bytes then 3072 CHW pixel bytes;
    the class label is the last label byte (CIFAR-100: coarse then fine label; the fine one is used)."""

    archive: str
    checksum: str
    folder: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    label_bytes: int
    num_classes: int
    base_urls: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)


# md5 values from the dataset page https://www.cs.toronto.edu/~kriz/cifar.html ("binary version").
CIFAR_ARCHIVES = {
    "cifar10": CifarArchive(
        archive="cifar-10-binary.tar.gz",
        checksum="md5:c32a1d4ab5d03f1284b67883e8d87530",
        folder="cifar-10-batches-bin",
        train_members=tuple(f"data_batch_{index}.bin" for index in range(1, 6)),
        test_members=("test_batch.bin",),
        label_bytes=1,
        num_classes=10,
    ),
    "cifar100": CifarArchive(
        archive="cifar-100-binary.tar.gz",
        checksum="md5:03b5dce01913d631647c71ecec9e9cb8",
        folder="cifar-100-binary",
        train_members=("train.bin",),
        test_members=("test.bin",),
        label_bytes=2,
        num_classes=100,
    ),
}


def load_cifar(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    base_urls: tuple[str, ...] | None = None,
    checksum: str | None = None,
) -> dict[str, np.ndarray]:
    """CIFAR-10/100 as numpy: train_images/test_images uint8 [N, 3, 32, 32], train_labels/test_labels int64 [N].

    `data_dir`: a directory holding the archive or its extracted folder (or the .bin files). `checksum`
    ('md5:<hex>') and `base_urls` override the known ones (tests serve a small archive). DataError when the
    files are missing, corrupt or cannot be downloaded.
    """
    if name not in CIFAR_ARCHIVES:
        raise ConfigError(f"unknown CIFAR dataset {name!r}; expected one of: {', '.join(CIFAR_ARCHIVES)}")
    spec = CIFAR_ARCHIVES[name]
    if data_dir is not None:
        members = _members_from_directory(spec, Path(data_dir).expanduser())
    else:
        target = resolve_cache_root(cache_dir) / name
        archive = cached_or_download(name, spec.archive, checksum or spec.checksum,
                                     base_urls or spec.base_urls, target, download)
        members = _members_from_archive(spec, archive)
    return {
        **_decode(spec, [members[file] for file in spec.train_members], "train"),
        **_decode(spec, [members[file] for file in spec.test_members], "test"),
    }


def _wanted(spec: CifarArchive) -> tuple[str, ...]:
    return spec.train_members + spec.test_members


def _members_from_archive(spec: CifarArchive, archive: Path) -> dict[str, bytes]:
    """The record files' bytes, read in one pass over the gzip tar stream (regular files only)."""
    wanted = {f"{spec.folder}/{file}": file for file in _wanted(spec)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name in wanted and member.isfile():
                    found[wanted[name]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{archive} is not a readable gzip tar archive ({error}); delete it to download again")
    missing = [file for file in _wanted(spec) if file not in found]
    if missing:
        raise DataError(f"{archive} lacks {spec.folder}/{missing[0]}" +
                        (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else ""))
    return found


def _members_from_directory(spec: CifarArchive, directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist or is not a directory")
    if (directory / spec.archive).is_file():
        return _members_from_archive(spec, directory / spec.archive)
    folder = directory / spec.folder if (directory / spec.folder).is_dir() else directory
    missing = [file for file in _wanted(spec) if not (folder / file).is_file()]
    if missing:
        raise DataError(f"data directory {directory} holds neither {spec.archive} nor {spec.folder}/{missing[0]}")
    return {file: (folder / file).read_bytes() for file in _wanted(spec)}


def _decode(spec: CifarArchive, blobs: list[bytes], split: str) -> dict[str, np.ndarray]:
    record = spec.label_bytes + IMAGE_BYTES
    files = spec.train_members if split == "train" else spec.test_members
    for blob, file in zip(blobs, files):
        if not blob or len(blob) % record:
            raise DataError(f"{spec.folder}/{file} holds {len(blob)} bytes, not a whole number of "
                            f"{record}-byte records")
    total = sum(len(blob) // record for blob in blobs)
    images, labels = np.empty((total, IMAGE_BYTES), dtype=np.uint8), np.empty(total, dtype=np.int64)
    start = 0
    for blob in blobs:  # copied straight into place: one copy of the pixels, not three
        rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record)
        images[start:start + len(rows)] = rows[:, spec.label_bytes:]
        labels[start:start + len(rows)] = rows[:, spec.label_bytes - 1]
        start += len(rows)
    if labels.max() >= spec.num_classes:
        raise DataError(f"{spec.folder} {split} labels must be in 0..{spec.num_classes - 1}, found {labels.max()}")
    images = images.reshape(-1, 3, 32, 32)
    return {f"{split}_images": images, f"{split}_labels": labels}
