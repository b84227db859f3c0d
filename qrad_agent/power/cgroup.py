"""CPU quota of the compute jobs' cgroup: the actuator that works on any Linux, VMs included.

Sources: kernel Documentation/admin-guide/cgroup-v2.rst (``cpu.max`` = "$MAX $PERIOD" in µs, "max" for no
limit) and Documentation/scheduler/sched-bwc.rst for v1 (``cpu.cfs_quota_us``, -1 for no limit, and
``cpu.cfs_period_us``). The smallest quota the kernel accepts is 1000 µs.
"""

from __future__ import annotations

import os
from pathlib import Path

from qrad_agent.errors import ActuatorError
from qrad_agent.power.sysfs import read_int, read_text, write_text

MIN_QUOTA_US = 1000
"""Smallest CFS bandwidth quota the kernel accepts (sched-bwc.rst), µs."""


def online_cpus(sysfs_root: Path) -> int | None:
    """CPUs listed in ``<sysfs_root>/devices/system/cpu/online`` ("0-3,6"), or None if unreadable."""
    try:
        text = (sysfs_root / "devices" / "system" / "cpu" / "online").read_text().strip()
        count = 0
        for part in text.split(","):
            low, _, high = part.partition("-")
            count += int(high or low) - int(low) + 1
    except (OSError, ValueError):
        return None
    return count or None


class CgroupQuotaActuator:
    """Sets a power level in [0, 1] as the jobs' share of ``cpus`` CPUs (quota = level * period * cpus).

    Level 0 writes the kernel's smallest quota (1 ms per period): jobs nearly stop without being killed.
    """

    name = "cgroup"
    steps = 0

    def __init__(self, path: Path, cpus: int | None = None) -> None:
        self.path = path
        self.cpus = cpus or os.cpu_count() or 1
        if (path / "cpu.max").exists():
            self.version = 2
        elif (path / "cpu.cfs_quota_us").exists():
            self.version = 1
        else:
            raise ActuatorError(f"{path}: neither cpu.max (cgroup v2) nor cpu.cfs_quota_us (v1)")
        self.period_us = self._period_us()

    def _period_us(self) -> int:
        if self.version == 2:
            return int(read_text(self.path / "cpu.max").split()[1])
        return read_int(self.path / "cpu.cfs_period_us")

    def quota_us(self, level: float) -> int:
        """The quota (µs per period) for ``level`` in [0, 1]."""
        level = min(1.0, max(0.0, level))
        return max(MIN_QUOTA_US, round(level * self.period_us * self.cpus))

    def apply(self, level: float) -> None:
        """Write the quota for ``level``. Raises ActuatorError naming the path that refused."""
        self._write(str(self.quota_us(level)))

    def release(self) -> None:
        """No CPU limit on the jobs."""
        self._write("max" if self.version == 2 else "-1")

    def _write(self, quota: str) -> None:
        if self.version == 2:
            write_text(self.path / "cpu.max", f"{quota} {self.period_us}")
        else:
            write_text(self.path / "cpu.cfs_quota_us", quota)

    def expected(self, level: float | None) -> dict[str, str]:
        """What `readback` must show after ``apply(level)`` (``None``: after `release`)."""
        if self.version == 2:
            quota = "max" if level is None else str(self.quota_us(level))
            return {"cpu.max": f"{quota} {self.period_us}"}
        quota = "-1" if level is None else str(self.quota_us(level))
        return {"cpu.cfs_quota_us": quota, "cpu.cfs_period_us": str(self.period_us)}

    def readback(self) -> dict[str, str]:
        """Applied quota, read back from the cgroup."""
        if self.version == 2:
            return {"cpu.max": read_text(self.path / "cpu.max")}
        return {"cpu.cfs_quota_us": read_text(self.path / "cpu.cfs_quota_us"),
                "cpu.cfs_period_us": read_text(self.path / "cpu.cfs_period_us")}
