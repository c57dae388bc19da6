"""One writer per run directory: an exclusive advisory lock on RUN_DIR/.lock for as long as a command writes there.

Torch-free, standard library only (POSIX flock).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ticketlab.errors import RunLockedError

LOCK_FILE = ".lock"

_HELD: dict[str, int] = {}  # run directories whose lock this process holds -> nesting depth


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the run directory's lock (an exclusive flock on RUN_DIR/.lock, which records the holder's PID) for
    the block; RunLockedError at once if another process holds it. Nested holds in one process share the lock
    (the rewind sweep holds its runs while `find_tickets` trains each); worker processes take none."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    import fcntl  # POSIX; the lock is advisory and released by the kernel when the holder dies

    descriptor = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(descriptor, 64).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise RunLockedError(
            f"run directory {run_dir} is in use by process {holder}; wait for it to finish or stop it, then run "
            "the command again (it resumes where that process stopped)") from None
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
