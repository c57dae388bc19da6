import pytest


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Small agents only wait on each other's threads on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
