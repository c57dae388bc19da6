"""CIFAR binary loaders and SVHN (offline: a generated archive with the real layout, served from loopback)."""

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from ticketlab.config import DataConfig
from ticketlab.data import load_dataset
from ticketlab.data.cifar import CIFAR_ARCHIVES, load_cifar
from ticketlab.data.svhn import load_svhn
from ticketlab.errors import DataError

PER_BATCH, NUM_TEST = 6, 5


def fake_cifar10(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (5 * PER_BATCH, 3, 32, 32), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 5 * PER_BATCH).astype(np.int64),
        "test_images": rng.integers(0, 256, (NUM_TEST, 3, 32, 32), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, NUM_TEST).astype(np.int64),
    }


def records(images, labels, prefix=None):
    """The binary record layout written independently: label byte(s), then R, G, B planes row-major."""
    out = bytearray()
    for index in range(len(labels)):
        if prefix is not None:
            out.append(int(prefix[index]))
        out.append(int(labels[index]))
        out += images[index].tobytes()  # C-order [3, 32, 32] is R plane, G plane, B plane
    return bytes(out)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def cifar10_members(arrays):
    members = {"cifar-10-batches-bin/batches.meta.txt": b"airplane\nautomobile\n"}
    for batch in range(5):
        part = slice(batch * PER_BATCH, (batch + 1) * PER_BATCH)
        members[f"cifar-10-batches-bin/data_batch_{batch + 1}.bin"] = records(
            arrays["train_images"][part], arrays["train_labels"][part])
    members["cifar-10-batches-bin/test_batch.bin"] = records(arrays["test_images"], arrays["test_labels"])
    return members


@pytest.fixture
def arrays():
    return fake_cifar10()


@pytest.fixture
def archive(arrays):
    return tar_gz(cifar10_members(arrays))


@pytest.fixture
def server(archive, monkeypatch):
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            if self.path != "/kriz/cifar-10-binary.tar.gz":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/kriz/", requests
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def assert_same(loaded, expected):
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value)
    assert loaded["train_images"].dtype == np.uint8 and loaded["train_labels"].dtype == np.int64


def test_download_once_with_checksum_then_cached(tmp_path, server, archive, arrays):
    url, requests = server
    checksum = "md5:" + hashlib.md5(archive).hexdigest()
    loaded = load_cifar("cifar10", cache_dir=tmp_path, base_urls=(url,), checksum=checksum)
    assert_same(loaded, arrays)
    assert (tmp_path / "cifar10" / "cifar-10-binary.tar.gz").is_file()
    assert_same(load_cifar("cifar10", cache_dir=tmp_path, base_urls=(url,), checksum=checksum), arrays)
    assert_same(load_cifar("cifar10", cache_dir=tmp_path, download=False, checksum=checksum), arrays)
    assert len(requests) == 1


def test_wrong_checksum_and_missing_file_are_data_errors(tmp_path, server):
    url, _ = server
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar("cifar10", cache_dir=tmp_path, base_urls=(url,))  # the real md5 rejects the fake archive
    with pytest.raises(DataError, match="HTTP 404"):
        load_cifar("cifar100", cache_dir=tmp_path, base_urls=(url,))
    with pytest.raises(DataError, match="is missing and download is disabled"):
        load_cifar("cifar10", cache_dir=tmp_path / "empty", download=False)


def test_corrupt_or_incomplete_archives_are_data_errors(tmp_path, arrays):
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "cifar-10-binary.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable gzip tar"):
        load_cifar("cifar10", data_dir=tmp_path / "garbage")
    members = cifar10_members(arrays)
    del members["cifar-10-batches-bin/test_batch.bin"]
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "cifar-10-binary.tar.gz").write_bytes(tar_gz(members))
    with pytest.raises(DataError, match="lacks cifar-10-batches-bin/test_batch.bin"):
        load_cifar("cifar10", data_dir=tmp_path / "partial")
    members = cifar10_members(arrays)
    members["cifar-10-batches-bin/data_batch_2.bin"] += b"\x00"
    (tmp_path / "ragged").mkdir()
    (tmp_path / "ragged" / "cifar-10-binary.tar.gz").write_bytes(tar_gz(members))
    with pytest.raises(DataError, match="data_batch_2.bin holds 18439 bytes"):
        load_cifar("cifar10", data_dir=tmp_path / "ragged")


def test_extracted_folder_in_data_dir(tmp_path, arrays):
    for name, content in cifar10_members(arrays).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    assert_same(load_cifar("cifar10", data_dir=tmp_path), arrays)


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    fine, coarse = rng.integers(0, 100, 7), rng.integers(0, 20, 7)
    content = records(images, fine, prefix=coarse)
    (tmp_path / "cifar-100-binary.tar.gz").write_bytes(
        tar_gz({"cifar-100-binary/train.bin": content, "cifar-100-binary/test.bin": content}))
    loaded = load_cifar("cifar100", data_dir=tmp_path)
    np.testing.assert_array_equal(loaded["train_labels"], fine)
    np.testing.assert_array_equal(loaded["test_images"], images)
    assert CIFAR_ARCHIVES["cifar100"].num_classes == 100


def test_load_dataset_normalizes_with_training_statistics(tmp_path, arrays):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(tar_gz(cifar10_members(arrays)))
    splits = load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path), validation_size=10))
    assert splits.x_train.shape == (20, 3, 32, 32) and splits.x_test.shape == (NUM_TEST, 3, 32, 32)
    raw = arrays["train_images"][:20].astype(np.float64) / 255
    mean, std = raw.mean(axis=(0, 2, 3)), raw.std(axis=(0, 2, 3), ddof=1)
    expected_val = (arrays["train_images"][20:] / 255 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(splits.x_val.numpy(), expected_val, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(splits.x_train.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    assert torch.equal(splits.y_test, torch.from_numpy(arrays["test_labels"]))


def test_svhn_from_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    labels = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": labels})
    loaded = load_svhn(data_dir=tmp_path)
    np.testing.assert_array_equal(loaded["train_labels"], [0, 1, 9, 0])
    np.testing.assert_array_equal(loaded["test_images"][2, 1], images[:, :, 1, 2])
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match="missing test_32x32.mat"):
        load_svhn(data_dir=tmp_path)
