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
is 149 bytes, about 0.62 s on the line.

The line is driven by our own RTU master (`qrad_drivers.modbus_rtu` framing over `qrad_drivers.uart`, on
the event loop, no thread): before each request the input is flushed, and bytes arriving while the request
is still on the line are discarded, so a late answer to an earlier poll is never read as this one's; a
reply is accepted only from the configured unit, with function 0x04, the byte count of the registers asked
for and a valid CRC; stray bytes before it (an RS-485 turnaround 0x00) are skipped, and a CRC-valid frame
that is not the answer (function 0x03, another request's byte count) is refused and reported.

Failure mapping: an exception response, a bad CRC, noise, a refused frame or no answer -> FAULT readings
with the reason; the port gone -> DriverError (reopened by the next ``open``). Checks on values: NaN/inf ->
FAULT; outside
the valid range -> OUT_OF_RANGE; |P| above V·I (active power cannot exceed apparent power, with 5 % + 10 W
for the meter's class-1 tolerance) -> FAULT on V, I and P; the total energy going down, or up faster than
the largest possible power allows since the last good value -> FAULT; voltage and frequency bit-identical
for ``stuck_after_s`` (a live grid always jitters in the last float digits) -> STALE on every channel.
"""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path
from typing import Literal

from pydantic import Field

from qrad_drivers.base import (ChannelSpec, Driver, DriverConfig, DriverError, Quality, Reading, check_range,
                               fault)
from qrad_drivers.modbus_rtu import Scan, describe, read_input_registers_request, scan_reply
from qrad_drivers.uart import UartPort, answer_window_s

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
CONSISTENCY_REL, CONSISTENCY_ABS_W = 0.05, 10.0
FLOAT32_SLACK = 2.0**-22  # two float32 steps, relative
INTER_FRAME_CHARS = 3.5  # Modbus RTU silence between frames, in characters (min 1.75 ms above 19200 baud)
MAX_REPLY_BYTES = 4096
"""More than this without the answer: the line is babbling; the request is given up."""


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
        self._port = UartPort(str(self.cfg.port), self.cfg.baudrate, self.cfg.parity, self.cfg.stopbits)
        self._opened = False
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
        await self._port.open()  # DriverError: missing, busy, no permission or not a tty
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        self._port.close()

    async def read(self, t_s: float) -> list[Reading]:
        if not self._opened or not self._port.is_open:
            raise DriverError(f"{self.cfg.port}: not open")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + answer_window_s(self.cfg.timeout_s)
        raw: dict[int, list[int] | str] = {}
        try:
            for start, count in REQUESTS:
                if raw:
                    await asyncio.sleep(INTER_FRAME_CHARS * self._port.char_time_s)
                raw[start] = await self._request(start, count, deadline)
        except DriverError:
            await self.close()
            raise
        readings = {key: self._decode(key, raw, t_s) for key in self._specs}
        self._check_consistency(readings)
        readings["energy"] = self._check_energy(readings["energy"], t_s)
        self._check_stuck(readings, raw.get(0x0000), t_s)
        return list(readings.values())

    @property
    def stale_bytes(self) -> int:
        """Bytes discarded because they arrived while a request was on the line (late answers)."""
        return self._port.stale_bytes

    async def _request(self, start: int, count: int, deadline: float) -> list[int] | str:
        """The registers, or why there are none. Raises DriverError when the port is lost."""
        what = f"FC04 0x{start:04X}+{count}"
        loop = asyncio.get_running_loop()
        request = read_input_registers_request(self.cfg.unit_id, start, count)
        if not await self._port.send_request(request, INTER_FRAME_CHARS):
            return f"{what}: request not sent, output queue full"
        buffer, scan = b"", Scan()
        while True:
            buffer += self._port.drain()
            scan = scan_reply(buffer, self.cfg.unit_id, count)
            if scan.registers is not None:
                return list(scan.registers)
            if scan.error is not None:
                return f"{what}: {scan.error}"
            if len(buffer) > MAX_REPLY_BYTES:
                return f"{what}: {describe(scan, len(buffer))}"
            if not await self._port.wait_readable(deadline - loop.time()):
                timeout = f"no answer within {self.cfg.timeout_s:g} s"
                return f"{what}: {timeout} ({describe(scan, len(buffer))})"

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
