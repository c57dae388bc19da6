"""The name of one training job of a lottery run, and the file names every job directory shares. Torch-free, so
the variant declarations (`ticketlab.lottery.variants`) can name the jobs they read without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DENSE = "dense"  # level 0 of every variant: the dense network, trained once per trial
RESULT_FILE = "result.json"
MASK_COST_FILE = "mask_cost.json"  # seconds the job's mask took to compute (scores, searches), when it computed one


@dataclass(frozen=True, order=True)
class JobKey:
    trial: int
    level: int
    variant: str

    def directory(self, run_dir: Path) -> Path:
        return run_dir / f"trial_{self.trial}" / f"level_{self.level:02d}" / self.variant

    def label(self) -> str:
        return f"trial {self.trial} level {self.level} {self.variant}"


def chain_parent(key: JobKey, chain: str) -> JobKey:
    """The job one level up a chain of tickets (`chain` at the level before; the dense job at level 1)."""
    return JobKey(key.trial, key.level - 1, chain if key.level > 1 else DENSE)
