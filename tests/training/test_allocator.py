"""Freed tensor memory stays in the process: a training step's tensors are not page-faulted back in every step."""

import resource
import sys

import pytest
import torch

from ticketlab.training.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_reallocating_a_step_sized_tensor_faults_no_pages_in():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    torch.empty(1 << 18).fill_(1.0)  # 1 MiB: above glibc's default mmap threshold
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        torch.empty(1 << 18).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # the heap grows once (256 pages); without the settings glibc mmaps some of them afresh: ~2,000 faults here
    assert faults < 1000, faults
