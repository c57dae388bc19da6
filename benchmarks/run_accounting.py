"""Where a benchmark's wall time went, beside its FLOP/s: CPU seconds of this process and of its worker processes
(finished children, `resource.getrusage`), the machine's idle and steal time over the same span (`/proc/stat`,
Linux; steal is time a virtual machine's CPUs were runnable but the host ran someone else), minor page faults,
and the load average at both ends.

A wall-clock efficiency ("% of the FLOP bound") mixes three things: how fast the code runs on a CPU it has
(FLOPs per CPU-second against the per-core peak: what a code change moves), how much of wall x workers the
workers were running at all (idle workers waiting on a dependency chain, or the load of other processes), and
how fast the CPU is at that moment (the peak; steal on a shared host). `RunAccounting` measures the last two so
the first can be read off a run anywhere.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _machine_jiffies() -> dict[str, int]:
    try:
        with open("/proc/stat") as handle:
            values = handle.readline().split()[1:1 + len(_STAT_FIELDS)]
    except OSError:
        return {}
    return dict(zip(_STAT_FIELDS, map(int, values)))


def _cpu_seconds(who: int) -> tuple[float, int]:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


@dataclass
class RunAccounting:
    """Use as a context manager around the timed work; `report` is filled on exit."""

    report: dict = field(default_factory=dict)

    def __enter__(self) -> "RunAccounting":
        self._wall = time.perf_counter()
        self._self, self._self_faults = _cpu_seconds(resource.RUSAGE_SELF)
        self._children, self._children_faults = _cpu_seconds(resource.RUSAGE_CHILDREN)
        self._jiffies = _machine_jiffies()
        self._load = os.getloadavg()[0]
        return self

    def __exit__(self, *exc) -> None:
        own, own_faults = _cpu_seconds(resource.RUSAGE_SELF)
        children, children_faults = _cpu_seconds(resource.RUSAGE_CHILDREN)
        jiffies = _machine_jiffies()
        spent = {name: jiffies[name] - self._jiffies.get(name, 0) for name in jiffies}
        total = sum(spent.values()) or 1
        self.report = {
            "wall_s": time.perf_counter() - self._wall,
            "cpu_s_self": own - self._self,
            "cpu_s_children": children - self._children,
            "minor_faults": own_faults - self._self_faults + children_faults - self._children_faults,
            "machine_idle_fraction": (spent.get("idle", 0) + spent.get("iowait", 0)) / total if jiffies else None,
            "machine_steal_fraction": spent.get("steal", 0) / total if jiffies else None,
            "load_start": self._load,
            "load_end": os.getloadavg()[0],
        }


def describe(report: dict, cores: int, flops: float | None = None, core_peak: float | None = None) -> str:
    """One line: CPU seconds against wall x cores, machine idle and steal, load, and (given the FLOPs and the
    one-core peak in FLOP/s) the FLOPs per CPU-second as a share of the one-core peak."""
    cpu = report["cpu_s_self"] + report["cpu_s_children"]
    text = (f"CPU {cpu:.0f} s (this process {report['cpu_s_self']:.0f}, workers {report['cpu_s_children']:.0f}) = "
            f"{100 * cpu / (report['wall_s'] * cores):.0f}% of wall x {cores} cores")
    if report["machine_idle_fraction"] is not None:
        text += (f"; machine idle {100 * report['machine_idle_fraction']:.1f}%, steal "
                 f"{100 * report['machine_steal_fraction']:.1f}%")
    text += f"; load {report['load_start']:.1f} -> {report['load_end']:.1f}; {report['minor_faults']:,} minor faults"
    if flops is not None and core_peak:
        text += f"; per CPU-second {flops / cpu / 1e9:.1f} GFLOP/s = {100 * flops / cpu / core_peak:.0f}% of one core's peak"
    return text
