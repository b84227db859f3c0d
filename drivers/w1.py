"""1-Wire temperature sensors (DS18B20 and kin) through the kernel's w1_therm driver (sysfs).

Source: kernel Documentation/w1/slaves/w1_therm.rst and drivers/w1/slaves/w1_therm.c. A slave shows up as
``<sysfs_root>/bus/w1/devices/<family>-<serial>`` (family 28 = DS18B20). Reading its ``w1_slave`` file
triggers a conversion (up to 750 ms at 12 bits) and returns two lines::

    73 01 4b 46 7f ff 0d 10 41 : crc=41 YES
    73 01 4b 46 7f ff 0d 10 41 t=23187

the 9 scratchpad bytes, the CRC byte and the kernel's verdict, then the same bytes and the temperature in
m°C. Scratchpad: bytes 0-1 temperature (int16 little-endian, 1/16 °C at 12 bits), 2-3 TH/TL, 4 config,
5-7 reserved, 8 the Dallas/Maxim CRC-8 (x^8+x^5+x^4+1, reflected 0x8C, init 0) of bytes 0-7.

Checks, each a FAULT: the kernel's "NO"; our own CRC-8 (the kernel's YES covers the bus transfer, ours the
text we parsed: both must pass, a failure of either wins, because a wrong temperature is worse than a missed
one); all-zero bytes (a shorted bus passes the CRC: CRC-8 of zeros is 0); t= disagreeing with the
scratchpad; exactly 85.000 °C, the DS18B20 power-on value (it reset or never converted; a true 85 °C
reading is indistinguishable, and out of place in a room heater's air path). Then the valid range
(-55..125 °C, OUT_OF_RANGE) and a frozen value: STALE after ``stuck_after_s`` of one value, but only for a
sensor whose own reads were changing before (`FreezeWatch`, as hwmon's): at 0.0625 °C a DS18B20 in a steady
room holds one step for half an hour and is right. A quiet sensor that stops while its redundant peers move is
the sensor hub's check, as are spikes (rate of change).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from qrad_drivers.base import (ChannelSpec, Driver, DriverConfig, DriverError, FreezeWatch, Quality, Reading,
                               check_range, fault)

DS18B20_FAMILY = "28"
POWER_ON_RESET_MC = 85_000
RESOLUTION_C = 0.0625
CRC_LINE = re.compile(r"((?:[0-9a-f]{2} ){9}): crc=([0-9a-f]{2}) (YES|NO)")
TEMP_LINE = re.compile(r"((?:[0-9a-f]{2} ){9})t=(-?\d+)")
TWELVE_BIT_FAMILIES = ("28", "22", "3b", "42")  # DS18B20, DS1822, DS1825, DS28EA00: int16 / 16 °C


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (poly 0x31 reflected = 0x8C, init 0, LSB first).

    Over a scratchpad including its CRC byte the result is 0 when the data is intact.
    """
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def parse_w1_slave(text: str) -> tuple[bytes, int]:
    """Scratchpad and t= value (m°C) of a w1_slave text. Raises ValueError saying what is wrong."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        raise ValueError(f"expected 2 lines, got {len(lines)}")
    head, tail = CRC_LINE.fullmatch(lines[0].strip()), TEMP_LINE.fullmatch(lines[1].strip())
    if head is None or tail is None:
        raise ValueError(f"malformed w1_slave text {text.strip()[:80]!r}")
    scratchpad = bytes.fromhex(head.group(1))
    if bytes.fromhex(tail.group(1)) != scratchpad:
        raise ValueError("the two lines show different scratchpads")
    if head.group(3) != "YES":
        raise ValueError(f"CRC failed (kernel: crc={head.group(2)} NO)")
    if crc8_maxim(scratchpad) != 0:
        raise ValueError(f"CRC failed (CRC-8 of bytes 0-7 is {crc8_maxim(scratchpad[:8]):02x}, "
                         f"byte 8 is {scratchpad[8]:02x})")
    if not any(scratchpad):
        raise ValueError("scratchpad all zeros (bus shorted to ground?)")
    return scratchpad, int(tail.group(2))


def first_ds18b20(sysfs_root: Path) -> str | None:
    """Id of the first DS18B20 (``28-*``) on any 1-Wire bus, in name order, or None."""
    found = sorted((sysfs_root / "bus" / "w1" / "devices").glob(f"{DS18B20_FAMILY}-*"))
    return found[0].name if found else None


class W1ThermConfig(DriverConfig):
    """One w1_therm sensor: ``device_id = "28-0316a2791aff"``, or the first 28-* device when omitted."""

    type: Literal["w1_therm"] = "w1_therm"
    device_id: str | None = Field(None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{12}$")
    valid_range_c: tuple[float, float] = (-55.0, 125.0)
    stuck_after_s: float = Field(1800.0, ge=0, description="frozen-value check of a sensor that was changing "
                                 "on most reads (s); 0 = off")


class W1ThermDriver(Driver):
    """Reads one DS18B20-class sensor; one channel named after the device, °C."""

    type_name = "w1_therm"
    config_model = W1ThermConfig
    nominal_period_s = 10.0
    cfg: W1ThermConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self._device_id: str | None = self.cfg.device_id
        self._freeze = FreezeWatch()
        low, high = self.cfg.valid_range_c
        return (self.spec("", "temperature", "°C", low, high),)

    @property
    def device_dir(self) -> Path | None:
        """The sensor's sysfs directory, once known."""
        if self._device_id is None:
            return None
        return self.context.sysfs_root / "bus" / "w1" / "devices" / self._device_id

    async def open(self) -> None:
        if self._device_id is None:
            self._device_id = first_ds18b20(self.context.sysfs_root)
        if self.device_dir is None or not self.device_dir.is_dir():
            wanted = self.cfg.device_id or "28-* device"
            raise DriverError(f"no 1-Wire {wanted} under {self.context.sysfs_root / 'bus/w1/devices'}")

    async def read(self, t_s: float) -> list[Reading]:
        if self.device_dir is None:
            await self.open()
        assert self.device_dir is not None
        return [self._read_slave(self.channels[0], self.device_dir / "w1_slave", t_s)]

    def _read_slave(self, spec: ChannelSpec, path: Path, t_s: float) -> Reading:
        try:
            scratchpad, t_mc = parse_w1_slave(path.read_text(encoding="ascii", errors="replace"))
        except FileNotFoundError:
            return fault(spec, t_s, f"1-Wire device {self._device_id} vanished ({path} missing)")
        except (OSError, ValueError) as exc:
            return fault(spec, t_s, f"{path}: {exc}")
        if self._device_id and self._device_id[:2] in TWELVE_BIT_FAMILIES:
            from_bytes_c = int.from_bytes(scratchpad[:2], "little", signed=True) / 16.0
            if abs(from_bytes_c - t_mc / 1000.0) >= RESOLUTION_C:
                return fault(spec, t_s, f"{path}: t={t_mc} disagrees with scratchpad ({from_bytes_c:g} °C)")
        if t_mc == POWER_ON_RESET_MC:
            return fault(spec, t_s, f"{path}: power-on reset value 85 °C (sensor reset or did not convert)")
        return self._judge(spec, t_mc, t_s, path)

    def _judge(self, spec: ChannelSpec, t_mc: int, t_s: float, path: Path) -> Reading:
        value = t_mc / 1000.0
        stuck_for = self._freeze.frozen_for(spec.name, t_mc, t_s, self.cfg.stuck_after_s)
        reading = check_range(spec, value, t_s)
        if reading.ok and stuck_for is not None:
            reason = f"{path}: t={t_mc} unchanged for {stuck_for:.0f} s"
            return Reading(spec.name, value, spec.unit, t_s, Quality.STALE, reason)
        return reading
