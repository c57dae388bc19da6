"""Keep freed tensor memory in the process for reuse (glibc), instead of returning it to the OS at every step.

A training step allocates and frees the same tensors again and again. glibc's malloc serves blocks above its
(adaptive) mmap threshold with fresh mmap pages and trims freed memory at the top of the heap back to the OS, so
the next step page-faults the same memory back in: 550-950 minor faults per step for 16 stacked MNIST-1D MLPs,
about 30% of the step (2.5 ms with the settings below, 3.6-4.2 ms without; benchmarks/population_speed.py). Large
allocations (32 MiB and up) still use mmap, and the memory a process holds stays at its peak, which training
reaches again every step anyway.

This changes the malloc settings of the whole process, once, and only on Linux with glibc; elsewhere it does
nothing. The same settings can be given from outside with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to 32 MiB and stop heap trimming (idempotent); whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): leave the allocator alone
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))
