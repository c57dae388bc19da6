"""Fixtures for the translation task: Multi30k from ../shared/data (offline), tiny configs, one torch thread."""

import os
from pathlib import Path

import pytest

# a worktree outside the main checkout names the corpus with TICKETLAB_TEST_MULTI30K
MULTI30K = Path(os.environ.get("TICKETLAB_TEST_MULTI30K")
                or Path(__file__).resolve().parents[3].parent / "shared" / "data" / "multi30k")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_for_module):
    """Tiny transformers only wait on each other's threads on a busy 2-core machine."""


@pytest.fixture(scope="package")
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"Multi30k is not at {MULTI30K} (see ../shared/README.md)")
    return MULTI30K


@pytest.fixture(scope="package")
def tiny_config(multi30k_dir, tmp_path_factory):
    import ticketlab

    return ticketlab.preset("transformer_tiny").replace(**{
        "data.data_dir": str(multi30k_dir), "data.cache_dir": str(tmp_path_factory.mktemp("cache"))})


@pytest.fixture(scope="package")
def tiny_data(tiny_config):
    from ticketlab.tasks import load_task

    return load_task("translation").load_data(tiny_config.data)
