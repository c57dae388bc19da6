"""Tests for the MNIST / Fashion-MNIST loaders (offline: downloads use a loopback HTTP server)."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from ticketlab.data.idx import write_idx
from ticketlab.data.mnist import FASHION_MNIST_SYSTEM_DIR, FILE_NAME_BY_KEY, MNIST_FILES, load_mnist_like
from ticketlab.errors import ConfigError, DataError

NUM_TRAIN, NUM_TEST = 50, 20


def make_fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(NUM_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=NUM_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(NUM_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=NUM_TEST, dtype=np.uint8),
    }


def write_fake_dataset(directory: Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for key, file_name in FILE_NAME_BY_KEY.items():
        write_idx(directory / (file_name if compressed else file_name[: -len(".gz")]), arrays[key])


def assert_arrays_equal(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(loaded) == set(FILE_NAME_BY_KEY)
    for key, expected_array in expected.items():
        np.testing.assert_array_equal(loaded[key], expected_array)
    assert loaded["train_images"].dtype == np.uint8
    assert loaded["train_labels"].dtype == np.int64


@pytest.fixture
def fake_arrays() -> dict[str, np.ndarray]:
    return make_fake_arrays()


@pytest.fixture
def fake_files(tmp_path: Path, fake_arrays) -> dict[str, bytes]:
    """File name -> gzip bytes of the fake dataset."""
    source_dir = tmp_path / "source"
    write_fake_dataset(source_dir, fake_arrays)
    return {file_name: (source_dir / file_name).read_bytes() for file_name in FILE_NAME_BY_KEY.values()}


@pytest.fixture
def fake_checksums(fake_files) -> dict[str, str]:
    return {name: "md5:" + hashlib.md5(content).hexdigest() for name, content in fake_files.items()}


class LoopbackServer:
    """Serves fake files under /good/; everything else (e.g. /missing/) is a 404. Records request paths."""

    def __init__(self, files: dict[str, bytes]):
        self.requested_paths: list[str] = []
        server_state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server naming)
                server_state.requested_paths.append(self.path)
                prefix, _, file_name = self.path.rpartition("/")
                content = files.get(file_name) if prefix == "/good" else None
                if content is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format, *args):  # silence request logging
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.port}/{prefix}/"


@pytest.fixture
def server(fake_files, monkeypatch):
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    loopback = LoopbackServer(fake_files)
    loopback.thread.start()
    yield loopback
    loopback.httpd.shutdown()
    loopback.httpd.server_close()
    loopback.thread.join(timeout=5)


def test_known_checksums_cover_standard_files():
    for files in MNIST_FILES.values():
        assert set(files.checksums) == set(FILE_NAME_BY_KEY.values())
        assert all(c.startswith("md5:") and len(c) == 4 + 32 for c in files.checksums.values())
        assert files.base_urls


def test_unknown_name_is_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"'cifar10'.*mnist, fashion_mnist"):
        load_mnist_like("cifar10", cache_dir=tmp_path)


def test_download_into_cache_then_reuse(tmp_path: Path, server, fake_arrays, fake_checksums):
    cache_dir = tmp_path / "cache"
    loaded = load_mnist_like(
        "mnist", cache_dir=cache_dir, base_urls=[server.url("good")], checksums=fake_checksums
    )
    assert_arrays_equal(loaded, fake_arrays)
    assert sorted(p.name for p in (cache_dir / "mnist").iterdir()) == sorted(FILE_NAME_BY_KEY.values())
    assert len(server.requested_paths) == 4

    again = load_mnist_like("mnist", cache_dir=cache_dir, base_urls=[server.url("good")], checksums=fake_checksums)
    assert_arrays_equal(again, fake_arrays)
    assert len(server.requested_paths) == 4  # served from the cache, no HTTP
    offline = load_mnist_like("mnist", cache_dir=cache_dir, download=False, checksums=fake_checksums)
    assert_arrays_equal(offline, fake_arrays)


def test_cache_dir_from_environment(tmp_path: Path, server, fake_arrays, fake_checksums, monkeypatch):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "env-cache"))
    loaded = load_mnist_like("fashion_mnist", base_urls=[server.url("good")], checksums=fake_checksums, system_dirs=[])
    assert_arrays_equal(loaded, fake_arrays)
    assert (tmp_path / "env-cache" / "fashion_mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_first_mirror_404_falls_back_to_second(tmp_path: Path, server, fake_arrays, fake_checksums):
    loaded = load_mnist_like(
        "mnist",
        cache_dir=tmp_path / "cache",
        base_urls=[server.url("missing"), server.url("good")],
        checksums=fake_checksums,
    )
    assert_arrays_equal(loaded, fake_arrays)
    assert "/missing/train-images-idx3-ubyte.gz" in server.requested_paths
    assert "/good/train-images-idx3-ubyte.gz" in server.requested_paths


def test_all_mirrors_failing_is_one_line_data_error(tmp_path: Path, server, fake_checksums):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*/missing/.*HTTP 404.*data_dir") as excinfo:
        load_mnist_like("mnist", cache_dir=tmp_path, base_urls=[server.url("missing")], checksums=fake_checksums)
    assert "\n" not in str(excinfo.value)


def test_wrong_checksum_rejects_download(tmp_path: Path, server, fake_checksums):
    wrong = dict(fake_checksums, **{"train-labels-idx1-ubyte.gz": "md5:" + "0" * 32})
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*checksum mismatch") as excinfo:
        load_mnist_like("mnist", cache_dir=tmp_path, base_urls=[server.url("good")], checksums=wrong)
    assert "\n" not in str(excinfo.value)
    assert not (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_default_checksums_reject_fake_files(tmp_path: Path, server):
    with pytest.raises(DataError, match="checksum mismatch"):
        load_mnist_like("mnist", cache_dir=tmp_path, base_urls=[server.url("good")])


def test_corrupted_cached_file_is_redownloaded(tmp_path: Path, server, fake_arrays, fake_checksums):
    cache_dir = tmp_path / "cache"
    load_mnist_like("mnist", cache_dir=cache_dir, base_urls=[server.url("good")], checksums=fake_checksums)
    (cache_dir / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz fails its checksum"):
        load_mnist_like("mnist", cache_dir=cache_dir, download=False, checksums=fake_checksums)
    loaded = load_mnist_like("mnist", cache_dir=cache_dir, base_urls=[server.url("good")], checksums=fake_checksums)
    assert_arrays_equal(loaded, fake_arrays)
    assert server.requested_paths[4:] == ["/good/t10k-images-idx3-ubyte.gz"]


def test_download_disabled_with_empty_cache(tmp_path: Path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is missing and download is disabled"):
        load_mnist_like("mnist", cache_dir=tmp_path, download=False)


def test_bad_checksum_override_is_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown file"):
        load_mnist_like("mnist", cache_dir=tmp_path, download=False, checksums={"x.gz": "md5:00"})
    with pytest.raises(ConfigError, match="md5:<hex digest>"):
        load_mnist_like(
            "mnist", cache_dir=tmp_path, download=False, checksums={"train-images-idx3-ubyte.gz": "abc"}
        )


@pytest.mark.parametrize("compressed", [True, False])
def test_data_dir_loads_without_checksum(tmp_path: Path, fake_arrays, compressed):
    write_fake_dataset(tmp_path / "mine", fake_arrays, compressed=compressed)
    loaded = load_mnist_like("mnist", data_dir=tmp_path / "mine", cache_dir=tmp_path / "cache")
    assert_arrays_equal(loaded, fake_arrays)
    assert not (tmp_path / "cache").exists()


def test_data_dir_missing_directory(tmp_path: Path):
    with pytest.raises(DataError, match=r"data directory .*no-such-dir does not exist"):
        load_mnist_like("mnist", data_dir=tmp_path / "no-such-dir", cache_dir=tmp_path / "cache")


def test_data_dir_missing_file_is_not_downloaded(tmp_path: Path, fake_arrays):
    write_fake_dataset(tmp_path / "mine", fake_arrays)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"mine is missing t10k-labels-idx1-ubyte\.gz"):
        load_mnist_like("mnist", data_dir=tmp_path / "mine", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_data_dir_inconsistent_files(tmp_path: Path, fake_arrays):
    short_labels = dict(fake_arrays, train_labels=fake_arrays["train_labels"][:-1])
    write_fake_dataset(tmp_path / "short", short_labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz has 49 labels .* has 50 images"):
        load_mnist_like("mnist", data_dir=tmp_path / "short")

    bad_labels = dict(fake_arrays, test_labels=np.full(NUM_TEST, 10, dtype=np.uint8))
    write_fake_dataset(tmp_path / "range", bad_labels)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: labels must be in 0\.\.9, found 10"):
        load_mnist_like("mnist", data_dir=tmp_path / "range")

    wrong_shape = dict(fake_arrays, train_images=np.zeros((NUM_TRAIN, 32, 32), dtype=np.uint8))
    write_fake_dataset(tmp_path / "shape", wrong_shape)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: expected uint8 array of shape \(N, 28, 28\)"):
        load_mnist_like("mnist", data_dir=tmp_path / "shape")


def test_fashion_mnist_from_system_dir(tmp_path: Path, fake_arrays):
    write_fake_dataset(tmp_path / "incomplete", fake_arrays)
    (tmp_path / "incomplete" / "train-images-idx3-ubyte.gz").unlink()
    write_fake_dataset(tmp_path / "system", fake_arrays, compressed=False)
    loaded = load_mnist_like(
        "fashion_mnist",
        cache_dir=tmp_path / "cache",
        download=False,
        system_dirs=[tmp_path / "absent", tmp_path / "incomplete", tmp_path / "system"],
    )
    assert_arrays_equal(loaded, fake_arrays)


@pytest.mark.skipif(
    not (Path(FASHION_MNIST_SYSTEM_DIR) / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"{FASHION_MNIST_SYSTEM_DIR} not installed",
)
def test_real_fashion_mnist_from_debian_package(tmp_path: Path):
    loaded = load_mnist_like("fashion_mnist", cache_dir=tmp_path, download=False)
    assert loaded["train_images"].shape == (60000, 28, 28)
    assert loaded["test_images"].shape == (10000, 28, 28)
    assert loaded["train_labels"].shape == (60000,)
    assert loaded["test_labels"].shape == (10000,)
    for split in ("train", "test"):
        labels = loaded[f"{split}_labels"]
        assert labels.min() == 0 and labels.max() == 9
        assert set(np.unique(labels)) == set(range(10))


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path, server):
    """Every way Fashion-MNIST can be missing says, in one line, how to get it: the Debian package first."""
    with pytest.raises(DataError) as offline:
        load_mnist_like("fashion_mnist", cache_dir=tmp_path, download=False, system_dirs=[tmp_path / "none"])
    with pytest.raises(DataError) as unfetchable:
        load_mnist_like("fashion_mnist", cache_dir=tmp_path, base_urls=[server.url("missing")], system_dirs=[])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as empty_dir:
        load_mnist_like("fashion_mnist", data_dir=tmp_path / "empty")
    for error in (offline, unfetchable, empty_dir):
        message = str(error.value)
        assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message, message
        assert "--data.data_dir" not in message
    assert "--data-dir DIR" in str(offline.value) and "--data-dir DIR" in str(unfetchable.value)
    assert "--data.download true" in str(offline.value)
    assert "--data.download" not in str(unfetchable.value)  # the download was what failed
    with pytest.raises(DataError) as mnist_offline:
        load_mnist_like("mnist", cache_dir=tmp_path, download=False)
    assert "apt-get" not in str(mnist_offline.value) and "--data-dir DIR" in str(mnist_offline.value)


FASHION_CLI = ["find", "--preset", "lenet_fashion_mnist_short", "--data.download", "false", "--quiet"]


def test_missing_fashion_mnist_through_the_cli_leaves_no_run_directory(tmp_path: Path, monkeypatch, capsys):
    from ticketlab.cli import main
    from ticketlab.data import mnist

    monkeypatch.setattr(mnist, "DEFAULT_SYSTEM_DIRS", {"mnist": (), "fashion_mnist": (str(tmp_path / "none"),)})
    runs = tmp_path / "runs"
    assert main([*FASHION_CLI, "--data.cache_dir", str(tmp_path / "cache"), "--root", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ticketlab: error: ")
    assert "apt-get install dataset-fashion-mnist" in err
    (tmp_path / "empty").mkdir()  # a preset whose data are not under --data-dir
    assert main([*FASHION_CLI, "--data-dir", str(tmp_path / "empty"), "--root", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty is missing train-images-idx3-ubyte.gz" in err
    assert not runs.exists() or not list(runs.iterdir())  # no run directory left holding only its lock


@pytest.mark.skipif(Path(FASHION_MNIST_SYSTEM_DIR).is_dir(), reason="Fashion-MNIST is installed on this machine")
def test_missing_fashion_mnist_through_the_installed_command(tmp_path: Path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ticketlab", *FASHION_CLI, "--data.cache_dir", str(tmp_path),
                           "--root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in done.stderr, done.stderr
    assert not list((tmp_path / "runs").glob("*"))
