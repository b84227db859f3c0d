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

    ``sample(t_s)`` returns the mean power since the previous sample, or None on the first call.
    A counter that went backwards wrapped once: the increment is ``e2 - e1 + max_energy_range_uj + 1``.
    """

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self._last: tuple[float, list[int]] | None = None

    def sample(self, t_s: float) -> float | None:
        """Mean total package power in W since the last call; None on the first call or dt <= 0."""
        counters = [read_int(z.path / "energy_uj") for z in self.zones]
        last, self._last = self._last, (t_s, counters)
        if last is None or t_s <= last[0]:
            return None
        total_uj = sum(energy_delta_uj(e1, e2, z.max_energy_range_uj)
                       for e1, e2, z in zip(last[1], counters, self.zones))
        return total_uj / 1e6 / (t_s - last[0])


def energy_delta_uj(e1_uj: int, e2_uj: int, max_energy_range_uj: int) -> int:
    """Energy (µJ) between two counter reads, allowing for one wrap at ``max_energy_range_uj``."""
    delta = e2_uj - e1_uj
    return delta + max_energy_range_uj + 1 if delta < 0 else delta
