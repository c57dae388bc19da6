"""Fixtures for the language task: small corpora in the real file layouts, and a loopback HTTP server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from ticketlab.tasks.language.data import char_splits

WORD_TEXTS = {  # train/valid/test, each line ends in <eos>; 'zebra' and 'moon' are not in train
    "train": " the cat sat on the mat \n\n the dog <unk> sat \n a cat and a dog \n" * 8,
    "valid": " the zebra sat \n the cat \n",
    "test": " a dog sat on the moon \n",
}


class LoopbackServer:
    """Serves `files` (name -> bytes) under /good/; anything else is a 404. Records the requested paths."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requested_paths = files, []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server naming)
                state.requested_paths.append(self.path)
                prefix, _, name = self.path.rpartition("/")
                content = state.files.get(name) if prefix == "/good" else None
                if content is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, prefix: str = "good") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{prefix}/"


@pytest.fixture
def serve(monkeypatch):
    """serve(files) -> a started LoopbackServer; shut down after the test."""
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def start(files: dict[str, bytes]) -> LoopbackServer:
        server = LoopbackServer(files)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


@pytest.fixture
def word_texts():
    return dict(WORD_TEXTS)


@pytest.fixture
def char_data():
    """Character-level TokenSplits of a small seeded text with some structure (learnable), BPTT 8."""
    generator = torch.Generator().manual_seed(0)
    words = ["to be ", "or not ", "that is ", "the question\n", "whether ", "tis nobler "]
    order = torch.randint(len(words), (400,), generator=generator)
    text = "".join(words[index] for index in order)
    splits = char_splits(text, "generated")
    from dataclasses import replace

    return replace(splits, sequence_length=8)


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny LSTMs gain nothing from threads, and on a loaded 2-core machine spinning OpenMP threads cost 10-50x."""
    yield
