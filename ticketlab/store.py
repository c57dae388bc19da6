"""Run-directory I/O: atomic writes, safetensors for tensors, JSON and JSON lines for metadata, plain CSV tables.

Every safetensors file written here carries, in its metadata under `TENSORS_SHA256`, the sha256 of its tensor
index (names, dtypes, shapes, offsets) and tensor bytes; `load_tensors` checks it, so a file with flipped bits
is never used. Torch is imported only when tensors are saved or loaded (the hashing and JSON parts are
torch-free).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ticketlab.errors import IntegrityError

if TYPE_CHECKING:
    import torch

TENSORS_SHA256 = "tensors_sha256"  # safetensors metadata key: sha256 of the tensor index and bytes


@contextlib.contextmanager
def _naming(path: Path):
    """Give an OSError raised while writing `path` (a full disk says nothing of where) the path's name."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise type(error)(error.errno, error.strerror, str(path)) from error


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write a file so that readers see the old content or the new, never a partial file; returns the path. The
    file gets the mode the umask gives new files (0644 under umask 022, as `open` would), so runs on a shared file
    system stay readable by the group. An OSError without a file name (a full disk) is raised naming `path`."""
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = _new_temporary(path)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    return path


def _new_temporary(path: Path) -> tuple[int, str]:
    """(descriptor, name) of a new hidden file beside `path`, created with mode 0666 less the umask (mkstemp
    would give 0600)."""
    while True:
        name = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), name
        except FileExistsError:
            continue


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_csv(path: str | os.PathLike[str], columns: Sequence[str],
              rows: Iterable[Mapping[str, Any] | Sequence[Any]]) -> Path:
    """Write a plain CSV table atomically (readable without ticketlab): the header `columns`, then one line per
    row. A row is a mapping (keys outside `columns` are errors, missing ones are left empty) or a sequence of
    cells in column order. Lines end in "\n"; returns the path."""
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        if isinstance(row, Mapping):
            extra = [key for key in row if key not in columns]
            if extra:
                raise ValueError(f"row has fields not in the columns: {', '.join(map(repr, extra))}")
            row = [row.get(column, "") for column in columns]
        writer.writerow(row)
    return atomic_write_bytes(path, buffer.getvalue().encode())


def read_json(path: Path) -> Any:
    """The JSON value of a UTF-8 file (UnicodeDecodeError and JSONDecodeError are ValueErrors)."""
    return json.loads(Path(path).read_bytes().decode("utf-8"))


def read_json_record(path: Path, what_it_records: str) -> dict:
    """The JSON object a run directory keeps in `path` (config.json, corpus.json, image_folder.json, ...);
    IntegrityError in one line, "PATH is damaged (why); `what_it_records`", if it is not UTF-8 JSON holding an
    object: such a file is the user's to restore or delete, never a traceback."""
    try:
        record = read_json(path)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise IntegrityError(f"{path} is damaged ({' '.join(str(error).split())[:80]}); {what_it_records}") from None
    return record


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Save a flat name->tensor dict as safetensors, atomically (tensors are copied to contiguous CPU), with the
    sha256 of its content in the metadata."""
    from safetensors.torch import save

    cpu, storages = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages:  # a tied weight (one Parameter under two names): safetensors stores each once
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        cpu[name] = tensor
    metadata = dict(metadata or {})
    metadata.pop(TENSORS_SHA256, None)
    # the hash covers the index and bytes, not the metadata that holds it; adding it leaves the data region as is
    _, index, data = _safetensors_parts(save(cpu, metadata=metadata or None), path)
    metadata[TENSORS_SHA256] = _content_sha256(index, data)
    atomic_write_bytes(path, save(cpu, metadata=metadata))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking its recorded content hash; IntegrityError if it is damaged."""
    return load_tensors_and_metadata(path, device)[0]


def load_tensors_and_metadata(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, verified as `load_tensors` does."""
    from safetensors.torch import load

    payload = Path(path).read_bytes()
    metadata = check_tensors_payload(payload, path)
    try:
        loaded = load(payload)
        # in file order, as safetensors' load_file returns them (load's own order varies from call to call)
        _, index, _ = _safetensors_parts(payload, path)
        tensors = {name: loaded[name] for name in sorted(loaded, key=lambda name: index[name]["data_offsets"])}
    except IntegrityError:
        raise
    except Exception as error:  # the format's own checks (offsets, sizes) failed
        raise IntegrityError(f"{path}: not a readable safetensors file ({error})") from None
    if str(device) != "cpu":
        tensors = {name: value.to(device) for name, value in tensors.items()}
    return tensors, metadata


def check_tensors_payload(payload: bytes, path: Path) -> dict[str, str]:
    """The metadata of a safetensors file's bytes after checking its header parses and, where the file records
    one, that its content hash matches; IntegrityError otherwise. Files without a hash (older runs) pass."""
    metadata, index, data = _safetensors_parts(payload, path)
    recorded = metadata.get(TENSORS_SHA256)
    if recorded is not None and recorded != _content_sha256(index, data):
        raise IntegrityError(f"{path}: tensor bytes differ from their recorded sha256")
    return metadata


def _safetensors_parts(payload: bytes, path: Path) -> tuple[dict[str, str], dict, bytes]:
    """(metadata, tensor index, data region) of safetensors bytes: an 8-byte little-endian header length, the
    JSON header, then the tensor bytes."""
    try:
        (header_length,) = struct.unpack("<Q", payload[:8])
        if header_length > len(payload) - 8:
            raise ValueError("header runs past the end of the file")
        header = json.loads(payload[8 : 8 + header_length])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise IntegrityError(f"{path}: not a readable safetensors file ({error})") from None
    return metadata, header, payload[8 + header_length :]


def _content_sha256(index: dict, data: bytes) -> str:
    digest = hashlib.sha256(json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
    digest.update(data)
    return digest.hexdigest()


def set_aside(path: Path, reason: str | None = None) -> Path:
    """Rename a damaged file to `<stem>.corrupt-<UTC timestamp><suffix>` beside it (kept for inspection, never
    read again); with a `reason`, say so in one line on stderr. Returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.stem}.corrupt-{stamp}-{counter}{path.suffix}")
    os.replace(path, target)
    if reason:
        print(f"ticketlab: warning: {reason} (moved to {target.name})", file=sys.stderr)
    return target


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with _naming(path), open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, up to the first line that is not a JSON object (a line cut short by a
    kill, or damage: bytes that are not UTF-8 read as such a line); [] for a missing file."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line cut short by a kill
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)
    atomic_write_bytes(path, text.encode())
