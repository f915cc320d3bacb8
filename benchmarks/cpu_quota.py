"""A CPU quota for one process in a benchmark: the agent given a fraction of its core (CFS bandwidth control).

    with CpuQuota(0.25) as quota:   # 2.5 ms of CPU in every 10 ms period
        quota.add(agent_pid)        # every thread of the process, and the children it starts afterwards

Unlike ``slow_model.py`` (which adds work to each inference batch only), a quota scales *everything*
the process does alike: decoding, windowing, routing, metrics and inference keep their real
proportions, so a capacity lowered this way is the agent's own at a smaller CPU. Uses the cgroup v2
``cpu.max`` file where the unified hierarchy has the cpu controller, else cgroup v1's
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; needs root (the benchmark says so and stops if not).
A short period (10 ms) keeps the throttling fine-grained: the process waits at most 10 ms minus its quota.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from types import TracebackType

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
_GROUPS = itertools.count()  # several quotas in one benchmark process: one group each


def _cpu_hierarchy() -> tuple[Path, int]:
    """The folder to create the group in and the cgroup version (2: ``cpu.max``, 1: ``cpu.cfs_quota_us``)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return CGROUP_ROOT, 2
    if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        return CGROUP_ROOT / "cpu", 1
    raise RuntimeError("no cgroup cpu controller (cgroup v2 cpu.max or v1 cpu.cfs_quota_us) to set a CPU quota with")


class CpuQuota:
    """A fresh cgroup allowing ``fraction`` of one CPU; removed on exit (its processes back to the parent)."""

    def __init__(self, fraction: float, *, period_us: int = PERIOD_US) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"CPU quota must be a fraction of one core in (0, 1], got {fraction}")
        self.fraction = fraction
        self.period_us = period_us
        self.quota_us = max(1000, round(fraction * period_us))  # the kernel's minimum quota is 1 ms
        parent, self.version = _cpu_hierarchy()
        self.parent = parent
        self.path = parent / f"edge-agent-bench-{os.getpid()}-{next(_GROUPS)}"

    def __enter__(self) -> CpuQuota:
        self.path.mkdir()
        if self.version == 2:
            (self.path / "cpu.max").write_text(f"{self.quota_us} {self.period_us}\n")
        else:
            (self.path / "cpu.cfs_period_us").write_text(f"{self.period_us}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{self.quota_us}\n")
        return self

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def throttled_s(self) -> float:
        """CPU time the kernel held the group back so far (seconds)."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_usec":
                return int(value) / 1e6
            if key == "throttled_time":  # v1: nanoseconds
                return int(value) / 1e9
        return 0.0

    def describe(self) -> str:
        return f"{self.quota_us / 1000:g} ms of CPU per {self.period_us / 1000:g} ms (cgroup v{self.version})"

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.parent / "cgroup.procs").write_text(f"{pid}\n")
            self.path.rmdir()
