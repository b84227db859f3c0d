"""The sensor hub: polls every configured channel at its period and keeps the latest reading.

Each channel is polled by its own task, so a slow driver does not delay another. The thermostat asks for
the best room temperature among its preferred channels; a reading older than ``stale_after_s`` counts as
stale whatever its quality.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from qrad_agent.clock import Clock
from qrad_agent.config import HwmonSensorConfig
from qrad_drivers.base import ChannelSpec, Quality, Reading
from qrad_drivers.hwmon import HwmonInput

log = structlog.get_logger(component="sensors")


def build_channel(cfg: HwmonSensorConfig, sysfs_root) -> HwmonInput:
    """The driver object for one configured sensor."""
    spec = ChannelSpec(cfg.name, cfg.quantity, cfg.unit, cfg.valid_min, cfg.valid_max, cfg.period_s)
    return HwmonInput(spec, sysfs_root, cfg.chip, cfg.attribute, cfg.chip_index, cfg.stuck_after_s)


@dataclass(frozen=True)
class Choice:
    """The reading chosen for a role, or None with the reason nothing usable was found."""

    reading: Reading | None
    reason: str


class SensorHub:
    """Latest reading per channel, refreshed by one polling task per channel."""

    def __init__(self, channels: list[HwmonInput], clock: Clock) -> None:
        self.channels = {c.spec.name: c for c in channels}
        self.clock = clock
        self.latest: dict[str, Reading] = {}
        self._reported: dict[str, Quality] = {}

    def poll(self, name: str) -> Reading:
        """Read channel ``name`` now and store the reading; quality changes are logged once."""
        reading = self.channels[name].read(self.clock.monotonic())
        self.latest[name] = reading
        if self._reported.get(name) is not reading.quality:
            self._reported[name] = reading.quality
            level = log.info if reading.quality is Quality.OK else log.warning
            level("channel quality", channel=name, quality=reading.quality.value, reason=reading.reason)
        return reading

    async def run(self) -> None:
        """Poll every channel at its period until cancelled."""
        async with asyncio.TaskGroup() as group:
            for name in self.channels:
                group.create_task(self._poll_loop(name), name=f"sensor:{name}")

    async def _poll_loop(self, name: str) -> None:
        period_s = self.channels[name].spec.period_s
        while True:
            self.poll(name)
            await asyncio.sleep(period_s)

    def best(self, names: list[str], stale_after_s: float) -> Choice:
        """The first channel of ``names`` with a usable, fresh reading; else None and every reason."""
        now_s = self.clock.monotonic()
        reasons = []
        for name in names:
            reading = self.latest.get(name)
            if reading is None:
                reasons.append(f"{name}: no reading yet")
            elif not reading.ok:
                reasons.append(f"{name}: {reading.quality.value}: {reading.reason}")
            elif now_s - reading.t_s > stale_after_s:
                reasons.append(f"{name}: last reading {now_s - reading.t_s:.0f} s old")
            else:
                return Choice(reading, "")
        return Choice(None, "; ".join(reasons))

    def status(self) -> dict:
        """Plain-JSON latest readings."""
        return {n: {"value": r.value, "unit": r.unit, "quality": r.quality.value, "reason": r.reason,
                    "t_s": r.t_s} for n, r in self.latest.items()}
