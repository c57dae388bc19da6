"""Reader and writer for the IDX array format used by MNIST-style datasets.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the array data in
big-endian C order. Files may be gzip-compressed; compression is detected from
the gzip magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from types import MappingProxyType
from typing import Mapping, Union

import numpy as np

from ticketlab.errors import DataError

PathLike = Union[str, os.PathLike]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype of the stored values.
IDX_DTYPE_BY_CODE: Mapping[int, np.dtype] = MappingProxyType(
    {
        0x08: np.dtype(">u1"),
        0x09: np.dtype(">i1"),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)

_HEADER_FIXED_BYTES = 4
_DIM_BYTES = 4


def _idx_code_for_dtype(dtype: np.dtype) -> int | None:
    """Return the IDX type code for a dtype (any byte order), or None if it has none."""
    for code, idx_dtype in IDX_DTYPE_BY_CODE.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    return None


def _read_file_bytes(path: PathLike) -> bytes:
    """Read a file, transparently decompressing gzip; raise DataError on any failure."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {os.fspath(path)}") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {os.fspath(path)}: {exc.strerror or exc}") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(
            f"corrupt IDX file {os.fspath(path)}: gzip stream is truncated (incomplete download?)"
        ) from None
    except (OSError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"corrupt IDX file {os.fspath(path)}: invalid gzip data ({reason})") from None


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a native-byte-order numpy array.

    Raises DataError, with a one-line message naming the file, if the file is
    missing, unreadable, not IDX, truncated, or has trailing data.
    """
    data = _read_file_bytes(path)
    where = f"corrupt IDX file {os.fspath(path)}"
    if len(data) < _HEADER_FIXED_BYTES:
        raise DataError(f"{where}: file has {len(data)} bytes, too short for an IDX header")
    zero_bytes, type_code, ndim = data[:2], data[2], data[3]
    if zero_bytes != b"\x00\x00":
        raise DataError(
            f"{where}: bad magic number 0x{data[:4].hex()} (expected 0x0000 followed by type code and ndim)"
        )
    if type_code not in IDX_DTYPE_BY_CODE:
        known_codes = ", ".join(f"0x{code:02X}" for code in IDX_DTYPE_BY_CODE)
        raise DataError(f"{where}: unknown data type code 0x{type_code:02X} (known: {known_codes})")
    if ndim == 0:
        raise DataError(f"{where}: header declares 0 dimensions")
    header_bytes = _HEADER_FIXED_BYTES + _DIM_BYTES * ndim
    if len(data) < header_bytes:
        raise DataError(
            f"{where}: header declares {ndim} dimensions but the file ends after {len(data)} bytes"
        )
    dims = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=_HEADER_FIXED_BYTES))
    stored_dtype = IDX_DTYPE_BY_CODE[type_code]
    expected_payload_bytes = stored_dtype.itemsize
    for size in dims:
        expected_payload_bytes *= size
    found_payload_bytes = len(data) - header_bytes
    if found_payload_bytes != expected_payload_bytes:
        raise DataError(
            f"{where}: expected {expected_payload_bytes} bytes of data for shape {dims}, "
            f"found {found_payload_bytes}"
        )
    stored = np.frombuffer(data, dtype=stored_dtype, offset=header_bytes).reshape(dims)
    return stored.astype(stored_dtype.newbyteorder("="), copy=True)


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file; gzip-compress (deterministically) if path ends with '.gz'.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte
    order). Raises ValueError for other dtypes, 0-d arrays, or dimensions that
    do not fit in uint32.
    """
    values = np.asarray(array)
    type_code = _idx_code_for_dtype(values.dtype)
    if type_code is None:
        raise ValueError(
            f"cannot write {values.dtype} array to IDX; supported dtypes: uint8, int8, int16, int32, float32, float64"
        )
    if not 1 <= values.ndim <= 255:
        raise ValueError(f"IDX arrays need 1 to 255 dimensions, got {values.ndim}")
    if any(size >= 2**32 for size in values.shape):
        raise ValueError(f"IDX dimensions must fit in uint32, got shape {values.shape}")
    header = bytes((0, 0, type_code, values.ndim)) + np.asarray(values.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(values, dtype=IDX_DTYPE_BY_CODE[type_code]).tobytes()
    if os.fspath(path).endswith(".gz"):
        with open(path, "wb") as raw_handle:
            # filename="" and mtime=0 keep the compressed bytes independent of name and time.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw_handle, mtime=0) as handle:
                handle.write(header)
                handle.write(payload)
    else:
        with open(path, "wb") as handle:
            handle.write(header)
            handle.write(payload)
