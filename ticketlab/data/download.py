"""Fetching one dataset file into the cache with a checksum, trying mirrors in order (used by CIFAR and SVHN)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from ticketlab.errors import ConfigError, DataError


def check_checksum_text(label: str, checksum: str) -> str:
    """Validate an '<algorithm>:<hex>' checksum (e.g. 'md5:...'); returns it lower-cased."""
    algorithm, _, digest = checksum.partition(":")
    if algorithm.lower() not in hashlib.algorithms_guaranteed or not digest:
        raise ConfigError(f"checksum for {label} must look like 'md5:<hex digest>', got {checksum!r}")
    return checksum.lower()


def file_checksum(path: Path, algorithm: str) -> str:
    """'<algorithm>:<hex>' of a file, read in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def cached_or_download(
    dataset: str, file_name: str, checksum: str, base_urls: Sequence[str], target_dir: Path, download: bool
) -> Path:
    """`target_dir/file_name` if it matches `checksum`, else fetched there from the first mirror that serves it.

    Raises DataError (one line, naming every URL tried) when the file cannot be had.
    """
    checksum = check_checksum_text(file_name, checksum)
    path = target_dir / file_name
    if path.is_file() and file_checksum(path, checksum.partition(":")[0]) == checksum:
        return path
    if not download:
        problem = "fails its checksum" if path.is_file() else "is missing"
        raise DataError(f"{dataset} file {path} {problem} and download is disabled; "
                        f"put the files in a local directory and pass it as --data.data_dir")
    import pooch  # only needed when downloading

    failures = []
    for base_url in base_urls:
        url = base_url.rstrip("/") + "/" + file_name
        try:
            return Path(pooch.retrieve(url, known_hash=checksum, path=target_dir, fname=file_name, progressbar=False))
        except (OSError, ValueError, RuntimeError) as error:  # requests errors are OSErrors
            failures.append(f"{url} ({_reason(error)})")
    raise DataError(f"could not fetch {dataset} file {file_name} from: {'; '.join(failures) or 'no mirror URLs'}; "
                    f"download it yourself into a local directory and pass it as --data.data_dir")


def _reason(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(error, ValueError) and "hash" in str(error).lower():
        return "checksum mismatch"
    return " ".join(str(error).split())[:200] or type(error).__name__
