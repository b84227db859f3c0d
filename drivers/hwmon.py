"""Linux hwmon inputs (sysfs): temperatures, humidity, fans, power, voltages.

Source: kernel Documentation/hwmon/sysfs-interface.rst: one ASCII integer per file; ``tempN_input`` in
millidegree Celsius, ``humidityN_input`` in milli-percent RH, ``fanN_input`` in RPM, ``powerN_input`` in µW,
``inN_input`` in mV; ``name`` holds the chip name (``sht4x``, ``coretemp``, ``nct7802`` ...). A device is
found by its chip name under ``<sysfs_root>/class/hwmon``; its hwmonN number may change across boots.

sysfs reads are served from kernel memory or a short bus transfer and are done synchronously. A failed read
(ENODATA, EIO, file gone) is a FAULT reading; a value that has not changed for ``stuck_after_s`` is STALE:
a live sensor with 0.01 °C resolution always jitters, so a frozen value means a hung chip or driver; a
channel that never jittered is not suspected for holding still (`FreezeWatch`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field
from qrad_drivers.base import (
    ChannelSpec,
    Driver,
    DriverConfig,
    DriverError,
    FreezeWatch,
    Quality,
    Reading,
    check_range,
    fault,
)

KINDS: dict[str, tuple[str, str, float, float, float]] = {
    "temp": ("temperature", "°C", 1e-3, -40.0, 125.0),
    "humidity": ("relative_humidity", "%RH", 1e-3, 0.0, 100.0),
    "fan": ("fan_speed", "RPM", 1.0, 0.0, 20000.0),
    "power": ("power", "W", 1e-6, 0.0, 5000.0),
    "in": ("voltage", "V", 1e-3, 0.0, 500.0),
}
"""Attribute kind -> (quantity, unit, raw-to-unit scale, default valid min, default valid max)."""
ATTRIBUTE = re.compile(r"(temp|humidity|fan|power|in)(\d+)_(input|average)")


def find_hwmon(sysfs_root: Path, chip: str, index: int = 0) -> Path | None:
    """The ``index``-th hwmon directory whose ``name`` is ``chip``, in hwmonN order, or None."""
    base = sysfs_root / "class" / "hwmon"
    found = []
    for entry in sorted(base.glob("hwmon*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            if (entry / "name").read_text().strip() == chip:
                found.append(entry)
        except OSError:
            continue
    return found[index] if index < len(found) else None


class HwmonConfig(DriverConfig):
    """A hwmon chip and the inputs to read: ``inputs = {room_temp = "temp1_input"}`` (channel -> attribute).

    ``ranges`` overrides a channel's valid range, e.g. ``{room_temp = [-10, 50]}``.
    """

    type: Literal["hwmon"] = "hwmon"
    chip: str
    chip_index: int = Field(0, ge=0)
    inputs: dict[str, str] = Field(min_length=1)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    stuck_after_s: float = Field(600.0, ge=0, description="frozen-value check for temperature/humidity; 0 = off")


class HwmonDriver(Driver):
    """Reads the configured inputs of one hwmon chip."""

    type_name = "hwmon"
    config_model = HwmonConfig
    nominal_period_s = 10.0
    cfg: HwmonConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        specs = []
        self._scale: dict[str, float] = {}
        for channel, attribute in self.cfg.inputs.items():
            match = ATTRIBUTE.fullmatch(attribute)
            if match is None:
                raise ValueError(f"hwmon attribute {attribute!r} is not <temp|humidity|fan|power|in><N>_input")
            quantity, unit, scale, low, high = KINDS[match.group(1)]
            low, high = self.cfg.ranges.get(channel, (low, high))
            specs.append(ChannelSpec(channel, quantity, unit, low, high, self.period_s))
            self._scale[channel] = scale
        self._device: Path | None = None
        self._freeze = FreezeWatch()
        return tuple(specs)

    async def open(self) -> None:
        self._device = find_hwmon(self.context.sysfs_root, self.cfg.chip, self.cfg.chip_index)
        if self._device is None:
            raise DriverError(f"no hwmon device named {self.cfg.chip!r} under {self.context.sysfs_root}")

    async def read(self, t_s: float) -> list[Reading]:
        if self._device is None or not (self._device / "name").exists():
            await self.open()
        assert self._device is not None
        return [self._read_one(spec, self._device / self.cfg.inputs[spec.name], t_s) for spec in self.channels]

    def _read_one(self, spec: ChannelSpec, path: Path, t_s: float) -> Reading:
        try:
            raw = path.read_text().strip()
            value = int(raw) * self._scale[spec.name]
        except (OSError, ValueError) as exc:
            return fault(spec, t_s, f"{path}: {exc}")
        reading = check_range(spec, value, t_s)
        watched = spec.quantity in ("temperature", "relative_humidity")
        stuck_for = self._freeze.frozen_for(spec.name, raw, t_s, self.cfg.stuck_after_s if watched else 0.0)
        if reading.ok and stuck_for is not None:
            reason = f"{path}: value {raw} unchanged for {stuck_for:.0f} s"
            return Reading(spec.name, value, spec.unit, t_s, Quality.STALE, reason)
        return reading
