"""Eastron SDM120 single-phase energy meter, Modbus RTU over RS-485: the heater's mains power meter.

Source: shared/notes/protocols.md "Eastron SDM120" (Eastron SDM120 protocol PDF): measurements are input
registers (function 0x04), each an IEEE-754 float32 in two registers, high word first (ABCD); voltage
0x0000, current 0x0006, active power 0x000C, frequency 0x0046, total active energy 0x0156 (kWh). Defaults
2400 baud 8N1, unit 1; the meter offers 1200-9600 baud (SolarNetwork wiki "SDM XXX meters": 2400 default,
9600 the fastest). Ratings (SDM120 data sheet, as quoted on domoticx.com "Eastron SDM120"): 230 V nominal,
161-300 V operational, Imax 45 A, 50 Hz ±10 %: hence current 0-45 A and active power ±13.5 kW (45 A x
300 V; negative when exporting, the meter is bidirectional).

One poll = two requests: 0x0000 x 72 registers (V, I, P, S, Q, PF, angle ... frequency: 36 values, under
the 40-value limit per request of Eastron's protocol PDFs) and 0x0156 x 2. At 2400 baud the block answer
is 149 bytes, about 0.62 s on the line. pymodbus is imported in ``open``, so loading this module to
validate a config needs no pymodbus.

Failure mapping: an exception response, a bad CRC, noise or no answer -> FAULT readings with the reason;
the port gone -> DriverError (reopened by the next ``open``). Checks on values: NaN/inf -> FAULT; outside
the valid range -> OUT_OF_RANGE; |P| above V·I (active power cannot exceed apparent power, with 5 % + 10 W
for the meter's class-1 tolerance) -> FAULT on V, I and P; the total energy going down, or up faster than
the largest possible power allows since the last good value -> FAULT; voltage and frequency bit-identical
for ``stuck_after_s`` (a live grid always jitters in the last float digits) -> STALE on every channel.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from qrad_drivers.base import (ChannelSpec, Driver, DriverConfig, DriverError, Quality, Reading, check_range,
                               fault)

if TYPE_CHECKING:
    from pymodbus.client import AsyncModbusSerialClient

Key = Literal["voltage", "current", "power", "energy", "frequency"]
CHANNELS: dict[str, tuple[str, str, int, float, float]] = {
    "voltage": ("voltage", "V", 0x0000, 0.0, 300.0),
    "current": ("current", "A", 0x0006, 0.0, 45.0),
    "power": ("active_power", "W", 0x000C, -13500.0, 13500.0),
    "energy": ("active_energy", "kWh", 0x0156, 0.0, 1.0e6),
    "frequency": ("frequency", "Hz", 0x0046, 45.0, 65.0),
}
"""key -> (quantity, unit, input register address, default valid min, default valid max)."""
REQUESTS: tuple[tuple[int, int], ...] = ((0x0000, 72), (0x0156, 2))
"""(start address, register count) read each poll; together they cover every CHANNELS address."""
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 6: "server device busy"}
CONSISTENCY_REL, CONSISTENCY_ABS_W = 0.05, 10.0
FLOAT32_SLACK = 2.0**-22  # two float32 steps, relative
INTER_FRAME_CHARS = 3.5  # Modbus RTU silence between frames, in 11-bit characters (min 1.75 ms)


def decode_float32(registers: list[int], index: int) -> float:
    """The float32 in ``registers[index]`` (high word) and ``registers[index + 1]`` (low word)."""
    return float(struct.unpack(">f", struct.pack(">HH", registers[index], registers[index + 1]))[0])


class Sdm120Config(DriverConfig):
    """An SDM120 on a serial port: ``port = "/dev/ttyUSB0"``; ``ranges`` overrides a valid range, e.g.
    ``{power = [0, 3000]}``; ``stuck_after_s`` = 0 turns the frozen-value check off."""

    type: Literal["sdm120"] = "sdm120"
    port: Path
    baudrate: Literal[1200, 2400, 4800, 9600] = 2400
    unit_id: int = Field(1, ge=1, le=247)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    stuck_after_s: float = Field(60.0, ge=0)
    ranges: dict[Key, tuple[float, float]] = Field(default_factory=dict)


class Sdm120Driver(Driver):
    """Reads voltage, current, active power, total energy and frequency of one SDM120."""

    type_name = "sdm120"
    config_model = Sdm120Config
    nominal_period_s = 10.0
    cfg: Sdm120Config

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self._client: AsyncModbusSerialClient | None = None
        self._rx_bytes = 0
        self._last_energy: tuple[float, float] | None = None  # (t_s, kWh) of the last good total
        self._mains_words: tuple[int, ...] = ()
        self._mains_changed_s = math.nan
        self._specs: dict[str, ChannelSpec] = {}
        for key, (quantity, unit, _address, low, high) in CHANNELS.items():
            low, high = self.cfg.ranges.get(key, (low, high))  # type: ignore[call-overload]
            self._specs[key] = self.spec(key, quantity, unit, low, high)
        return tuple(self._specs.values())

    async def open(self) -> None:
        await self.close()
        from pymodbus.client import AsyncModbusSerialClient
        from pymodbus.framer import FramerType

        port = str(self.cfg.port)
        if not os.path.exists(port):
            raise DriverError(f"{port}: no such serial port")
        client = AsyncModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=self.cfg.baudrate, bytesize=8, parity=self.cfg.parity,
            stopbits=self.cfg.stopbits, timeout=self.cfg.timeout_s, retries=0, reconnect_delay=0,
            trace_packet=self._trace, name=f"sdm120 {self.cfg.name}")
        if not await client.connect():
            client.close()
            raise DriverError(f"{port}: cannot open the serial port (busy, no permission or not a tty)")
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: remembers whether any byte came back, to tell noise from silence."""
        if not sending:
            self._rx_bytes = max(self._rx_bytes, len(data))
        return data

    async def read(self, t_s: float) -> list[Reading]:
        client = self._connected()
        raw: dict[int, list[int] | str] = {}
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                for start, count in REQUESTS:
                    if raw:
                        await asyncio.sleep(max(INTER_FRAME_CHARS * 11 / self.cfg.baudrate, 0.00175))
                    raw[start] = await self._request(client, start, count)
        except TimeoutError:
            heard = self._heard()
            for start, count in REQUESTS:
                raw.setdefault(start, f"FC04 0x{start:04X}+{count}: no answer within {self.cfg.timeout_s:g} s"
                               f" ({heard})")
        if not client.connected:
            await self.close()
            raise DriverError(f"{self.cfg.port}: serial port lost")
        readings = {key: self._decode(key, raw, t_s) for key in self._specs}
        self._check_consistency(readings)
        readings["energy"] = self._check_energy(readings["energy"], t_s)
        self._check_stuck(readings, raw.get(0x0000), t_s)
        return list(readings.values())

    def _connected(self) -> AsyncModbusSerialClient:
        if self._client is None:
            raise DriverError(f"{self.cfg.port}: not open")
        if not self._client.connected:
            raise DriverError(f"{self.cfg.port}: serial port lost")
        return self._client

    def _heard(self) -> str:
        if self._rx_bytes:
            return f"{self._rx_bytes} bytes received, no valid frame: bad CRC or noise"
        return "nothing received"

    async def _request(self, client: AsyncModbusSerialClient, start: int, count: int) -> list[int] | str:
        """The registers, or why there are none."""
        from pymodbus.exceptions import ModbusException

        what = f"FC04 0x{start:04X}+{count}"
        self._rx_bytes = 0
        try:
            response = await client.read_input_registers(start, count=count, device_id=self.cfg.unit_id)
        except ModbusException as exc:
            return f"{what}: {exc} ({self._heard()})"
        if response.isError():
            code = getattr(response, "exception_code", 0)
            return f"{what}: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}): {response}"
        if len(response.registers) != count:
            return f"{what}: {len(response.registers)} registers in the answer, expected {count}"
        return list(response.registers)

    def _decode(self, key: str, raw: dict[int, list[int] | str], t_s: float) -> Reading:
        spec, address = self._specs[key], CHANNELS[key][2]
        start = max(s for s, _ in REQUESTS if s <= address)
        registers = raw[start]
        if isinstance(registers, str):
            return fault(spec, t_s, registers)
        value = decode_float32(registers, address - start)
        if not math.isfinite(value):
            return fault(spec, t_s, f"register 0x{address:04X}: {value} is not a finite float")
        return check_range(spec, value, t_s)

    def _check_consistency(self, readings: dict[str, Reading]) -> None:
        """Active power cannot exceed apparent power V·I: if it does, V, I or P is wrong."""
        v, i, p = readings["voltage"], readings["current"], readings["power"]
        if not (v.ok and i.ok and p.ok):
            return
        apparent = v.value * i.value
        if abs(p.value) > apparent * (1 + CONSISTENCY_REL) + CONSISTENCY_ABS_W:
            reason = f"active power {p.value:.1f} W exceeds V·I = {apparent:.1f} VA: inconsistent values"
            for key in ("voltage", "current", "power"):
                readings[key] = fault(self._specs[key], readings[key].t_s, reason)

    def _check_energy(self, reading: Reading, t_s: float) -> Reading:
        """The total never goes down, and rises at most at the largest valid power since the last good one."""
        if not reading.ok:
            return reading
        if self._last_energy is not None:
            last_t, last_kwh = self._last_energy
            spec, power = self._specs["energy"], self._specs["power"]
            if reading.value < last_kwh:
                reason = f"energy counter went backwards: {reading.value:g} < {last_kwh:g} kWh"
                return fault(spec, t_s, reason)
            p_max = max(abs(power.valid_min), abs(power.valid_max))
            allowed = p_max * max(t_s - last_t, 0.0) / 3.6e6 + abs(reading.value) * FLOAT32_SLACK
            if reading.value - last_kwh > allowed:
                return fault(spec, t_s, f"energy counter jumped {reading.value - last_kwh:g} kWh in "
                             f"{t_s - last_t:g} s (more than {allowed:g} kWh at {p_max:g} W)")
        self._last_energy = (t_s, reading.value)
        return reading

    def _check_stuck(self, readings: dict[str, Reading], block: list[int] | str | None, t_s: float) -> None:
        """Voltage and frequency words frozen for ``stuck_after_s``: a hung meter repeats its last values."""
        if not isinstance(block, list) or self.cfg.stuck_after_s <= 0:
            return
        words = tuple(block[0x00:0x02] + block[0x46:0x48])
        if words != self._mains_words:
            self._mains_words, self._mains_changed_s = words, t_s
            return
        frozen_s = t_s - self._mains_changed_s
        if frozen_s >= self.cfg.stuck_after_s:
            reason = f"voltage and frequency unchanged for {frozen_s:.0f} s: meter stuck"
            for key, r in readings.items():
                if r.ok:
                    readings[key] = Reading(r.channel, r.value, r.unit, t_s, Quality.STALE, reason)
