"""Linux IIO sensors (sysfs): barometric pressure, temperature, humidity, illuminance.

Source: kernel Documentation/ABI/testing/sysfs-bus-iio. A device is ``<sysfs_root>/bus/iio/devices/
iio:deviceN`` with a ``name`` file (``bme280``, ``bh1750``, ``tsl2591`` ...); N may change across boots, so
the device is found by name. Processed values (``_input``) are in fixed units: ``in_pressure_input`` kPa,
``in_temp_input`` m°C, ``in_humidityrelative_input`` m%RH, ``in_illuminance_input`` lux. A raw value is
converted as ``(raw + offset) * scale`` (``in_<type>[N]_offset``/``_scale``, offset 0 when absent) into the
same units. Values may be fractional ("100.337250000"): parsed as floats.

Reported units: hPa (kPa * 10, the weather unit), °C, %RH, lx. A failed read is FAULT; a value outside the
channel's range is OUT_OF_RANGE; a frozen temperature/humidity that used to jitter is STALE after
``stuck_after_s`` (a constant one is not suspected: `FreezeWatch`); pressure
and light may legitimately hold still and are only marked STALE with a frozen temperature/humidity sibling
of the same chip (a hung chip). Spikes (rate of change) are the sensor hub's check, configured there.
"""

from __future__ import annotations

import math
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
    "pressure": ("pressure", "hPa", 10.0, 300.0, 1100.0),
    "temp": ("temperature", "°C", 1e-3, -40.0, 85.0),
    "humidityrelative": ("relative_humidity", "%RH", 1e-3, 0.0, 100.0),
    "illuminance": ("illuminance", "lx", 1.0, 0.0, 100_000.0),
}
"""IIO type -> (quantity, unit, IIO-unit-to-unit scale, default valid min, default valid max)."""
ATTRIBUTE = re.compile(r"in_(pressure|temp|humidityrelative|illuminance)(\d*)_(input|raw)")
WATCHED = ("temperature", "relative_humidity")


def find_iio(sysfs_root: Path, name: str, index: int = 0) -> Path | None:
    """The ``index``-th ``iio:deviceN`` directory whose ``name`` is ``name``, in N order, or None."""
    base = sysfs_root / "bus" / "iio" / "devices"
    found = []
    for entry in sorted(base.glob("iio:device*"), key=lambda p: int(p.name[10:] or 0)):
        try:
            if (entry / "name").read_text().strip() == name:
                found.append(entry)
        except OSError:
            continue
    return found[index] if index < len(found) else None


def read_number(path: Path) -> float:
    """The number in a sysfs file. Raises OSError or ValueError (also for nan/inf)."""
    value = float(path.read_text().strip())
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return value


def read_raw(device: Path, attribute: str) -> float:
    """``(raw + offset) * scale`` of a ``_raw`` attribute; channel-specific scale/offset files first."""
    stem = attribute[: -len("_raw")]
    shared = re.sub(r"\d+$", "", stem)

    def extra(suffix: str, default: float) -> float:
        for candidate in (device / f"{stem}_{suffix}", device / f"{shared}_{suffix}"):
            if candidate.exists():
                return read_number(candidate)
        return default

    return (read_number(device / attribute) + extra("offset", 0.0)) * extra("scale", 1.0)


class IioConfig(DriverConfig):
    """An IIO device and the attributes to read: ``inputs = {room_pressure = "in_pressure_input"}``.

    ``ranges`` overrides a channel's valid range, e.g. ``{room_temp = [-10, 50]}``.
    """

    type: Literal["iio"] = "iio"
    device: str = Field(min_length=1, description="content of the IIO device's name file, e.g. bme280")
    device_index: int = Field(0, ge=0)
    inputs: dict[str, str] = Field(min_length=1)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    stuck_after_s: float = Field(600.0, ge=0,
                                 description="frozen-value check for temperature/humidity; 0 = off")


class IioDriver(Driver):
    """Reads the configured attributes of one IIO device."""

    type_name = "iio"
    config_model = IioConfig
    nominal_period_s = 10.0
    cfg: IioConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        specs = []
        self._scale: dict[str, float] = {}
        for channel, attribute in self.cfg.inputs.items():
            match = ATTRIBUTE.fullmatch(attribute)
            if match is None:
                raise ValueError(f"IIO attribute {attribute!r} is not in_<pressure|temp|humidityrelative|"
                                 "illuminance>[N]_<input|raw>")
            quantity, unit, scale, low, high = KINDS[match.group(1)]
            low, high = self.cfg.ranges.get(channel, (low, high))
            specs.append(ChannelSpec(channel, quantity, unit, low, high, self.period_s))
            self._scale[channel] = scale
        self._device: Path | None = None
        self._freeze = FreezeWatch()
        self._frozen: dict[str, float | None] = {}
        return tuple(specs)

    async def open(self) -> None:
        self._device = find_iio(self.context.sysfs_root, self.cfg.device, self.cfg.device_index)
        if self._device is None:
            raise DriverError(f"no IIO device named {self.cfg.device!r} under {self.context.sysfs_root}")

    async def read(self, t_s: float) -> list[Reading]:
        if self._device is None or not (self._device / "name").exists():
            await self.open()
        assert self._device is not None
        readings = [self._read_one(spec, self._device, t_s) for spec in self.channels]
        return self._hung_chip(readings, t_s)

    def _read_one(self, spec: ChannelSpec, device: Path, t_s: float) -> Reading:
        attribute = self.cfg.inputs[spec.name]
        try:
            if attribute.endswith("_raw"):
                raw = read_raw(device, attribute)
            else:
                raw = read_number(device / attribute)
        except (OSError, ValueError) as exc:
            return fault(spec, t_s, f"{device / attribute}: {exc}")
        value = raw * self._scale[spec.name]
        reading = check_range(spec, value, t_s)
        stuck_for = self._frozen[spec.name] = self._freeze.frozen_for(spec.name, raw, t_s, self.cfg.stuck_after_s)
        if reading.ok and spec.quantity in WATCHED and stuck_for is not None:
            reason = f"{attribute}: value unchanged for {stuck_for:.0f} s"
            return Reading(spec.name, value, spec.unit, t_s, Quality.STALE, reason)
        return reading

    def _frozen_for(self, spec: ChannelSpec, t_s: float) -> float | None:
        """How long a noisy channel has shown the same value, when at least ``stuck_after_s``, else None
        (as of the read at ``t_s``)."""
        return self._frozen.get(spec.name)

    def _hung_chip(self, readings: list[Reading], t_s: float) -> list[Reading]:
        """With a frozen temperature/humidity, also mark the chip's frozen pressure/light STALE."""
        if not any(r.quality is Quality.STALE for r in readings):
            return readings
        out = []
        for spec, reading in zip(self.channels, readings, strict=True):
            stuck_for = self._frozen_for(spec, t_s)
            if reading.ok and stuck_for is not None:
                reason = f"{self.cfg.inputs[spec.name]}: unchanged for {stuck_for:.0f} s on a hung chip"
                reading = Reading(spec.name, reading.value, spec.unit, t_s, Quality.STALE, reason)
            out.append(reading)
        return out
