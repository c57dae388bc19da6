"""Tests for the IDX reader/writer."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from ticketlab.data.idx import read_idx, write_idx
from ticketlab.errors import DataError

TYPE_CODE_BY_DTYPE = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def expected_idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    """IDX encoding recomputed independently with numpy."""
    magic = np.array([0, 0, type_code, array.ndim], dtype=np.uint8).tobytes()
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return magic + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def make_array(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", list(TYPE_CODE_BY_DTYPE))
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip_matches_reference_bytes(tmp_path: Path, dtype, shape, compressed):
    array = make_array(dtype, shape)
    path = tmp_path / ("a.idx.gz" if compressed else "a.idx")
    write_idx(path, array)

    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == compressed
    file_bytes = gzip.decompress(raw) if compressed else raw
    assert file_bytes == expected_idx_bytes(array, TYPE_CODE_BY_DTYPE[dtype])

    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.dtype.isnative
    assert loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)
    loaded[...] = 0  # returned array is a writable copy


def test_gzip_detected_by_content_not_name(tmp_path: Path):
    array = make_array(np.uint8, (4, 6))
    gz_path = tmp_path / "x.gz"
    write_idx(gz_path, array)
    misnamed = tmp_path / "x-idx2-ubyte"
    misnamed.write_bytes(gz_path.read_bytes())
    plain_named_gz = tmp_path / "y.gz"
    plain_named_gz.write_bytes(expected_idx_bytes(array, 0x08))
    np.testing.assert_array_equal(read_idx(misnamed), array)
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)


def test_big_endian_input_array_written_correctly(tmp_path: Path):
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    write_idx(tmp_path / "b.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.idx"), array)


def test_gzip_output_is_deterministic(tmp_path: Path):
    array = make_array(np.uint8, (10, 28, 28))
    write_idx(tmp_path / "one.gz", array)
    write_idx(tmp_path / "two.gz", array)
    assert (tmp_path / "one.gz").read_bytes() == (tmp_path / "two.gz").read_bytes()


@pytest.mark.parametrize("bad_array", [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool), np.array(5, np.uint8)])
def test_write_rejects_unsupported_arrays(tmp_path: Path, bad_array):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "bad.idx", bad_array)


def write_raw(path: Path, payload: bytes, compressed: bool) -> Path:
    path.write_bytes(gzip.compress(payload, mtime=0) if compressed else payload)
    return path


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "unknown data type code 0x07"),
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "declares 3 dimensions"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "expected 5 bytes of data for shape \\(5,\\), found 2"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01ab", "expected 1 bytes of data .* found 2"),
        (b"\x00\x00\x0c\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(20), "expected 24 bytes of data"),
    ],
    ids=["magic", "type", "short", "ndim0", "dims-truncated", "payload-short", "payload-long", "wrong-dims"],
)
def test_corrupt_files_raise_data_error_naming_file(tmp_path: Path, payload, message, compressed):
    path = write_raw(tmp_path / ("broken-idx-file" + (".gz" if compressed else "")), payload, compressed)
    with pytest.raises(DataError, match=f"broken-idx-file.*{message}") as excinfo:
        read_idx(path)
    assert "\n" not in str(excinfo.value)


def test_truncated_gzip_raises_data_error(tmp_path: Path):
    full = tmp_path / "full.gz"
    write_idx(full, make_array(np.uint8, (50, 28, 28)))
    truncated = tmp_path / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        read_idx(truncated)


def test_garbled_gzip_raises_data_error(tmp_path: Path):
    full = bytearray(gzip.compress(expected_idx_bytes(np.arange(200, dtype=np.uint8), 0x08)))
    full[12:20] = b"\xff" * 8
    path = tmp_path / "garbled.gz"
    path.write_bytes(bytes(full))
    with pytest.raises(DataError, match=r"garbled\.gz"):
        read_idx(path)


def test_missing_file_raises_data_error(tmp_path: Path):
    with pytest.raises(DataError, match=r"not found: .*nothing-here"):
        read_idx(tmp_path / "nothing-here")
