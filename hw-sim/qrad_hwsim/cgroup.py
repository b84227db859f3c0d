"""Simulated CPU cgroup of the compute jobs (``qrad-jobs``), v2 or v1 layout.

v2 (Documentation/admin-guide/cgroup-v2.rst): ``fs/cgroup/qrad-jobs/cpu.max`` = "$MAX $PERIOD",
"max 100000" initially; cpu.stat (usage_usec) and cgroup.procs. v1: ``fs/cgroup/cpu/qrad-jobs/``
with cpu.cfs_quota_us (-1: no limit), cpu.cfs_period_us (100000 µs) and cpuacct.usage (ns).

As in the kernel (kernel/sched/core.c, tg_set_cfs_bandwidth), a quota below 1000 µs or a period
outside 1000..1 000 000 µs is refused: the simulator keeps the previous limits, as it does for text
that does not parse.

The jobs are always queued in this model, so the busy fraction of the board's cores is
util = min(1, quota / (period * n_cores_total)) under a quota and 1 without one.
"""

from __future__ import annotations

from pathlib import Path

from .sysfs_io import read_int, read_text, publish_text, write_files

DEFAULT_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000  # also the smallest period
MAX_PERIOD_US = 1_000_000


def _limits_ok(quota_us: int | None, period_us: int | None) -> bool:
    """Whether the kernel would accept this quota (None: unlimited) and period (None: unchanged)."""
    if quota_us is not None and quota_us < MIN_QUOTA_US:
        return False
    return period_us is None or MIN_QUOTA_US <= period_us <= MAX_PERIOD_US


def parse_cpu_max(text: str | None) -> tuple[int | None, int | None] | None:
    """Parse a v2 cpu.max value into (quota_us or None for "max", period_us or None if absent);
    None if it does not parse or the kernel would refuse it."""
    if not text:
        return None
    parts = text.split()
    if len(parts) > 2:
        return None
    try:
        quota = None if parts[0] == "max" else int(parts[0])
        period = int(parts[1]) if len(parts) == 2 else None
    except ValueError:
        return None
    return (quota, period) if _limits_ok(quota, period) else None


class JobCgroup:
    """The jobs' cgroup: reads the agent's CPU quota, accounts the CPU time used."""

    def __init__(self, sys_root: Path, version: str, n_cores_total: int) -> None:
        if version not in ("v1", "v2"):
            raise ValueError(f"cgroup version must be v1 or v2, not {version!r}")
        self.version = version
        self.n_cores_total = n_cores_total
        self._quota_us: int | None = None
        self._period_us = DEFAULT_PERIOD_US
        self._usage_s = 0.0
        if version == "v2":
            write_files(sys_root / "fs/cgroup", {"cgroup.controllers": "cpuset cpu io memory pids",
                                                 "cgroup.subtree_control": "cpu"})
            self.dir = sys_root / "fs/cgroup/qrad-jobs"
            write_files(self.dir, {"cpu.max": f"max {DEFAULT_PERIOD_US}", "cgroup.procs": "",
                                   "cpu.stat": self._stat_text()})
        else:
            self.dir = sys_root / "fs/cgroup/cpu/qrad-jobs"
            write_files(self.dir, {"cpu.cfs_quota_us": -1, "cpu.cfs_period_us": DEFAULT_PERIOD_US,
                                   "cgroup.procs": "", "tasks": "", "cpuacct.usage": 0})

    def _stat_text(self) -> str:
        usec = int(self._usage_s * 1e6)
        return f"usage_usec {usec}\nuser_usec {usec}\nsystem_usec 0"

    def _read_limits(self) -> None:
        if self.version == "v2":
            parsed = parse_cpu_max(read_text(self.dir / "cpu.max"))
            if parsed is not None:
                self._quota_us = parsed[0]
                self._period_us = parsed[1] or self._period_us
            return
        quota = read_int(self.dir / "cpu.cfs_quota_us", -1 if self._quota_us is None else self._quota_us)
        quota_us = None if quota == -1 else quota
        if _limits_ok(quota_us, None):
            self._quota_us = quota_us
        period = read_int(self.dir / "cpu.cfs_period_us", self._period_us)
        if _limits_ok(None, period):
            self._period_us = period

    def util(self) -> float:
        """Busy fraction of all the board's cores (0..1) under the current quota."""
        self._read_limits()
        if self._quota_us is None:
            return 1.0
        return min(1.0, self._quota_us / (self._period_us * self.n_cores_total))

    def account(self, util: float, dt_s: float) -> None:
        """Add the jobs' CPU time for ``dt_s`` s at ``util`` to cpu.stat / cpuacct.usage."""
        self._usage_s += util * self.n_cores_total * dt_s
        if self.version == "v2":
            publish_text(self.dir / "cpu.stat", self._stat_text())
        else:
            publish_text(self.dir / "cpuacct.usage", str(int(self._usage_s * 1e9)))
