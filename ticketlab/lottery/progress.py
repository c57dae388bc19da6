"""The one progress bar of commands that train: a tqdm bar on stderr that always says what is happening, or a
bar that shows nothing (`--quiet`). Torch-free; tqdm is imported only when a bar is drawn."""

from __future__ import annotations

import sys


class NoBar:
    """The bar of a quiet run: every call does nothing."""

    def update(self, count: int = 1) -> None: ...
    def set_description(self, text: str) -> None: ...
    def set_waiting(self, text: str) -> None: ...
    def close(self) -> None: ...


class LabelledBar:
    """A tqdm bar that always says what is happening: the job(s) training and, until the first steps are reported,
    what the run waits for (preparing the first job; worker processes or Ray tasks starting and loading data)."""

    FIRST_WAIT = "preparing the first job"

    def __init__(self, bar, label: str = "", waiting: str = FIRST_WAIT) -> None:
        self.bar, self.label, self.waiting = bar, label, waiting
        self.waits_for_workers = False  # processes or Ray tasks still starting when the first jobs are handed out
        self._show()

    def _show(self) -> None:
        text = self.label if not self.waiting else f"{self.label} ({self.waiting})" if self.label else self.waiting
        self.bar.set_description(text)

    def set_waiting(self, text: str) -> None:
        self.waiting, self.waits_for_workers = text, True
        self._show()

    def set_description(self, text: str) -> None:
        self.label = text
        if not self.waits_for_workers:  # in this process: the job starts now
            self.waiting = ""
        self._show()

    def update(self, count: int = 1) -> None:
        if self.waiting:
            self.waiting = ""
            self._show()
        self.bar.update(count)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, *, done: int = 0, enabled: bool = True, label: str = "") -> LabelledBar | NoBar:
    """A bar over `total` steps (`done` of them already done, e.g. by an interrupted run), or a NoBar when not
    `enabled` or when `total` is 0 (a command with nothing to train shows no empty bar). With `label` (a command
    that trains one kind of work, e.g. "stability copies") the bar says it from the start; without, it says what
    it waits for until the caller labels the first jobs."""
    if not enabled or total == 0:
        return NoBar()
    from tqdm import tqdm

    desc = label or LabelledBar.FIRST_WAIT
    bar = tqdm(total=total, initial=done, unit="it", unit_scale=True, dynamic_ncols=True, file=sys.stderr, desc=desc)
    return LabelledBar(bar, label, "" if label else LabelledBar.FIRST_WAIT)
