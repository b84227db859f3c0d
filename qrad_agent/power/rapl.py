"""RAPL through the powercap class: package power limits and measured package energy.

Source: kernel Documentation/power/powercap/powercap.rst and Documentation/ABI/testing/sysfs-class-powercap.
``<sysfs_root>/class/powercap/intel-rapl:N`` is package N; ``constraint_0`` is the long-term limit
(``constraint_0_power_limit_uw``, µW); ``energy_uj`` counts µJ and wraps to 0 after ``max_energy_range_uj``
(typically 2^32 x 61 µJ, about 22 min at 200 W), so it must be sampled more often than that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qrad_agent.errors import ActuatorError
from qrad_agent.power.sysfs import read_int, write_text

PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")
DEFAULT_PACKAGE_MIN_W = 5.0
"""Lowest long-term limit we write per package (W); below it firmware clamps or the package stalls."""


@dataclass(frozen=True)
class RaplZone:
    """One package zone: its directory, its counter range (µJ) and the limit range (µW)."""

    path: Path
    max_energy_range_uj: int
    max_power_uw: int
    min_power_uw: int


def discover_zones(sysfs_root: Path, min_package_w: float = DEFAULT_PACKAGE_MIN_W) -> list[RaplZone]:
    """Package zones ``intel-rapl:N`` (not their ``:N:M`` sub-zones), by N. Raises ActuatorError."""
    base = sysfs_root / "class" / "powercap"
    zones = []
    paths = [p for p in base.glob("intel-rapl:*") if PACKAGE_ZONE.fullmatch(p.name)]
    for path in sorted(paths, key=lambda p: int(p.name.split(":")[1])):
        max_uw_file = path / "constraint_0_max_power_uw"
        max_uw = read_int(max_uw_file) if max_uw_file.exists() else 0
        if max_uw <= 0:  # some firmware reports 0: fall back to the limit found at start
            max_uw = read_int(path / "constraint_0_power_limit_uw")
        zones.append(RaplZone(path, read_int(path / "max_energy_range_uj"), max_uw,
                              min(max_uw, round(min_package_w * 1e6))))
    return zones


class RaplActuator:
    """Sets a power level in [0, 1] as each package's long-term limit, linear in µW between its bounds."""

    name = "rapl"
    steps = 0

    def __init__(self, zones: list[RaplZone]) -> None:
        if not zones:
            raise ActuatorError("no RAPL package zone found")
        self.zones = zones

    def limits_uw(self, level: float) -> list[int]:
        """The constraint_0_power_limit_uw each package gets for ``level`` in [0, 1]."""
        level = min(1.0, max(0.0, level))
        return [round(z.min_power_uw + level * (z.max_power_uw - z.min_power_uw)) for z in self.zones]

    def apply(self, level: float) -> None:
        """Write the limits for ``level`` on every package, even past one that refuses; then raises
        ActuatorError naming the first path that refused."""
        errors = []
        for zone, limit in zip(self.zones, self.limits_uw(level)):
            try:
                write_text(zone.path / "constraint_0_power_limit_uw", str(limit))
            except ActuatorError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def release(self) -> None:
        """Limits at their maximum: RAPL no longer limits."""
        self.apply(1.0)

    def expected(self, level: float) -> dict[str, int]:
        """What `readback` must show after ``apply(level)``."""
        return {z.path.name: uw for z, uw in zip(self.zones, self.limits_uw(level))}

    def readback(self) -> dict[str, int]:
        """Applied long-term limit per package (µW), read back from sysfs."""
        return {z.path.name: read_int(z.path / "constraint_0_power_limit_uw") for z in self.zones}


class RaplEnergyMeter:
    """Measured package power (W) from successive ``energy_uj`` reads, correct across the counter wrap.

    ``sample(t_s)`` returns the mean power since the reference sample (the last one it accepted), or None
    until a reference is anchored (below). A counter that went backwards wrapped once: the increment is
    ``e2 - e1 + max_energy_range_uj + 1``.

    A sample less than ``MIN_INTERVAL_FRACTION`` of the previous interval after the reference is not
    evaluated (None; the reference stays, so the next sample covers the whole span). A counter is only
    current to its last update: hw-sim's every simulator step (10 s at speed 1), an energy meter's register
    at its own rate. Over an interval shorter than that update period one update's energy divided by a
    fraction of it reads a multiple of the true power: two samplers sharing the meter at different phases
    (the autotune step test every 10 s, then the thermostat's first step a second later) showed 5688 W
    on a 500 W heater. For the same reason counters that have not moved since the reference were not
    updated (a package always draws some power): such a sample is not evaluated either, so a sampler
    faster than the counter's updates reads the mean between updates instead of 0 W and then 10x. The
    first read is taken at an unknown phase of the updates, so intervals start at the first change seen
    after it: the first power comes from the third read.
    """

    MIN_INTERVAL_FRACTION = 0.5

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self._last: tuple[float, list[int]] | None = None
        self._interval_s: float | None = None
        self._anchored = False

    @property
    def reference_t_s(self) -> float | None:
        """Loop time (s) of the reference sample: where the interval of the next evaluated sample starts."""
        return None if self._last is None else self._last[0]

    def sample(self, t_s: float) -> float | None:
        """Mean total package power in W since the reference sample; None on the first call, for dt <= 0,
        or for an interval too short to evaluate (see the class docstring)."""
        last = self._last
        if last is not None:
            dt_s = t_s - last[0]
            if dt_s <= 0 or (self._interval_s is not None and dt_s < self.MIN_INTERVAL_FRACTION * self._interval_s):
                return None
        counters = [read_int(z.path / "energy_uj") for z in self.zones]
        if last is not None and counters == last[1]:
            return None  # not updated since the reference (a package always draws power): nothing to divide
        self._last = (t_s, counters)
        if last is None or not self._anchored:  # the first change seen anchors the intervals at an update
            self._anchored = last is not None
            return None
        self._interval_s = t_s - last[0]
        total_uj = sum(energy_delta_uj(e1, e2, z.max_energy_range_uj)
                       for e1, e2, z in zip(last[1], counters, self.zones))
        return total_uj / 1e6 / self._interval_s


def energy_delta_uj(e1_uj: int, e2_uj: int, max_energy_range_uj: int) -> int:
    """Energy (µJ) between two counter reads, allowing for one wrap at ``max_energy_range_uj``."""
    delta = e2_uj - e1_uj
    return delta + max_energy_range_uj + 1 if delta < 0 else delta
