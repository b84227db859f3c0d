"""Real jobs as the simulated board's heat source (hardware-in-the-loop).

The board model (board.py) normally assumes the jobs always fill whatever CPU quota the agent allows
(cgroup.py: util = quota / capacity). In a hardware-in-the-loop run real sandboxed jobs run on this machine
instead, in a real cgroup; `attach_measured_jobs` makes the board take its utilisation from them:

    util = Δ(jobs' CPU seconds) / (Δ(real seconds) · cpus)      (0..1)

read from the jobs' parent cgroup (v1: ``cpuacct/<name>/cpuacct.usage`` in ns; v2: ``cpu.stat`` usage_usec),
and the board's power model turns it into watts at the frequency the agent set on the simulated cpufreq /
RAPL files: P = platform overhead + Σ_packages (P_idle + util · P_dyn(f)). Every watt goes into the room.

The room runs ``speed`` times faster than real time, the jobs in real time: a utilisation is a rate, so a
real second at util u stands for ``speed`` simulated seconds at util u. The RAPL energy counters the agent
reads to learn its power curve are advanced by the real interval (model dt / speed) so that the watts the
agent measures on the loop clock are the board's watts, not ``speed`` times them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class CgroupCpuMeter:
    """CPU seconds used under a real cgroup, and the busy fraction of ``cpus`` CPUs between samples.

    ``cgroup`` is the jobs' parent cgroup as the agent names it (``/sys/fs/cgroup/qrad-jobs``): on a v2 mount
    it is the directory; on v1 its name is looked up in the ``cpuacct`` hierarchy next to it. Usage only
    grows (the kernel charges a job's time to every ancestor, and a removed child's time stays counted);
    a decrease (counter reset) is taken as zero. ``min_interval_s`` keeps a sample from being taken over a
    window too short to mean anything: calls closer than that return the previous value.
    """

    def __init__(self, cgroup: Path, cpus: int, min_interval_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        cgroup = Path(cgroup)
        if (cgroup.parent / "cgroup.controllers").exists():
            self.version, self.path = 2, cgroup / "cpu.stat"
        else:
            self.version, self.path = 1, cgroup.parent / "cpuacct" / cgroup.name / "cpuacct.usage"
        self.cpus = max(1, int(cpus))
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last_t = clock()
        self._last_usage = self.usage_s()
        self.last_util = 0.0
        self.total_cpu_s = 0.0  # jobs' CPU seconds since this meter started

    def usage_s(self) -> float:
        """CPU seconds the cgroup has used, 0.0 while it does not exist (yet)."""
        try:
            text = self.path.read_text()
        except OSError:
            return 0.0
        try:
            if self.version == 1:
                return int(text.strip()) / 1e9
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except ValueError:
            pass
        return 0.0

    def util(self) -> float:
        """Busy fraction of the ``cpus`` CPUs since the previous sample (0..1)."""
        now = self._clock()
        elapsed = now - self._last_t
        if elapsed < self.min_interval_s:
            return self.last_util
        usage = self.usage_s()
        used = max(0.0, usage - self._last_usage)
        self._last_t, self._last_usage = now, usage
        self.total_cpu_s += used
        self.last_util = max(0.0, min(1.0, used / (elapsed * self.cpus)))
        return self.last_util


class MeasuredJobsCgroup:
    """Stands in for the board's simulated jobs cgroup (cgroup.JobCgroup): the busy fraction is measured."""

    def __init__(self, meter: CgroupCpuMeter) -> None:
        self.meter = meter

    def util(self) -> float:
        return self.meter.util()

    def account(self, util: float, dt_s: float) -> None:
        """Nothing to publish: the real cgroup accounts the real jobs' time itself."""


class _RealTimeRapl:
    """A RAPL zone whose energy counter advances by real time (model dt / speed)."""

    def __init__(self, zone: Any, speed: float) -> None:
        self._zone, self._speed = zone, speed

    def add_energy(self, power_w: float, dt_s: float) -> int:
        return self._zone.add_energy(power_w, dt_s / self._speed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zone, name)


def attach_measured_jobs(heater: Any, cgroup: Path, cpus: int, speed: float,
                         min_interval_s: float = 0.2) -> CgroupCpuMeter:
    """Make ``heater``'s board (a SimulatedHeater's ``board``) take its utilisation from the real jobs under
    ``cgroup`` on ``cpus`` CPUs, with its RAPL counters on real time for a run ``speed`` times faster than
    real time. Returns the meter (its ``total_cpu_s`` and ``last_util`` are the measured side)."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    meter = CgroupCpuMeter(cgroup, cpus, min_interval_s)
    board = heater.board
    board.cgroup = MeasuredJobsCgroup(meter)
    board.zones = [_RealTimeRapl(z, speed) for z in board.zones]
    return meter
