import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_for_module):
    """Small agents only wait on each other's threads on a busy 2-core machine."""
