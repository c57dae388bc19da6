import contextlib
import os

import pytest
import torch

from ticketlab.data.splits import make_splits


def pytest_configure(config):
    """Under pytest-xdist each worker process runs torch on one thread: two 1-thread processes share 2 cores
    better than two 2-thread ones, whose OpenMP threads spin against each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@contextlib.contextmanager
def _torch_threads(count: int):
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (exactness checks: multi-threaded GEMMs round differently)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_for_module():
    """Torch on one thread for a whole module (or package, from its conftest): tiny networks only wait on each
    other's threads on a busy 2-core machine."""
    with _torch_threads(1):
        yield


@pytest.fixture
def tiny_data():
    """A small, learnable 10-class problem: class templates plus noise (seeded)."""
    return _tiny_splits()


@pytest.fixture(scope="module")
def tiny_data_for_module():
    """The `tiny_data` problem, for module-scoped fixtures (one finished run shared by a module's tests)."""
    return _tiny_splits()


def _tiny_splits():
    generator = torch.Generator().manual_seed(0)
    templates = torch.randn(10, 24, generator=generator)
    labels = torch.randint(0, 10, (700,), generator=generator)
    inputs = templates[labels] + 0.8 * torch.randn(700, 24, generator=generator)
    return make_splits(inputs[:600], labels[:600], inputs[600:], labels[600:], validation_size=100, num_classes=10)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))])
def device(request):
    """Run the test on the CPU and, where a GPU exists, on CUDA (TF32 off: the checks compare fp32 results)."""
    if request.param == "cpu":
        yield torch.device("cpu")
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
