"""Progress bars on stderr for the commands that train: one wrapper, so every command's bar counts optimizer steps
the same way, and a bar that is off costs nothing (tqdm is imported only when a bar is shown)."""

from __future__ import annotations

import sys


class NoBar:
    """A bar that shows nothing: progress is off, or there is nothing left to train."""

    def update(self, count: int = 1) -> None: ...
    def set_description(self, text: str) -> None: ...
    def set_waiting(self, text: str) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, *, enabled: bool = True, description: str | None = None, initial: int = 0):
    """A tqdm bar over `total` optimizer steps (`initial` of them already done) on stderr, labelled
    `description`; a NoBar when not `enabled` or when `total` is 0 (a finished run shows no empty bar)."""
    if not enabled or total == 0:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", unit_scale=True, dynamic_ncols=True, file=sys.stderr,
                desc=description)
