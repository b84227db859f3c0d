"""Winsen MH-Z19B NDIR CO2 sensor on a UART (9600 baud 8N1, 9-byte frames, request/response).

Source: Winsen MH-Z19B user manual (see docs in /work/shared/notes/protocols.md): the host sends
``FF 01 86 00 00 00 00 00 79``; the sensor answers ``FF 86 HH LL b4 b5 b6 b7 CS`` with CO2 = HH*256 + LL
ppm; CS is the two's-complement negation of the sum of bytes 1..7. Bytes 4-7 are undocumented (byte 4 is
commonly the temperature + 40 °C; it is decoded for diagnostics only, never as a channel).

Valid range 0..10000 ppm: the MH-Z19B's detection range is configurable to 2000, 5000 (default) or
10000 ppm (manual, command 0x99), so 10000 ppm is the most any configuration can report; the low end is 0,
not 400, because a sensor calibrated by ABC to 400 ppm legitimately reads a little under 400 outdoors.
Anything above (0xFFFF from a sensor in trouble) is OUT_OF_RANGE.

Each read flushes the input, sends the read command, discards what arrives while the command is on the
line (plus `GUARD_CHARS`: the sensor cannot answer a command it has not received, so those bytes are a late
answer to an earlier read, which would otherwise pass for this one's: frames carry no sequence number),
and waits for the answer within a share of ``timeout_s`` (``uart.ANSWER_SHARE``), resynchronising on
``FF 86`` so leading garbage is discarded. A bad
checksum, a cut frame or garbage is a FAULT reading with the reason; silence is FAULT "no answer"; a lost
port raises DriverError. A live MH-Z19B's reading jitters by a few ppm from one read to the next, so a
value unchanged for ``stuck_after_s`` (default 30 min, 0 = off) is marked STALE: the sensor has hung.

A slow drift (ageing lamp, ABC pulling the baseline in a permanently occupied room) is not visible in one
sensor's readings; it is left to the hub's redundancy and plausibility checks.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverError, Quality, Reading, check_range
from qrad_drivers.uart import UartPort, answer_window_s

FRAME_LEN = 9
START = 0xFF
SENSOR_NUMBER = 0x01
CMD_READ_CO2 = 0x86
CMD_ZERO_CALIBRATION = 0x87
CMD_ABC = 0x79
ABC_ON = 0xA0
VALID_MAX_PPM = 10000.0
STUCK_AFTER_S = 1800.0
GUARD_CHARS = 1.5
"""Characters after the command's last byte during which arrivals still count as stale. The manual gives
no answer latency; 1.5 characters (1.6 ms at 9600 baud) is below any answer seen from a microcontroller
that must first check the command's checksum."""


def checksum(frame: bytes) -> int:
    """The MH-Z19 checksum of a 9-byte frame: minus the sum of bytes 1..7, modulo 256."""
    return -sum(frame[1:8]) & 0xFF


def command(cmd: int, args: bytes = b"") -> bytes:
    """The 9-byte request for command ``cmd`` with up to five argument bytes."""
    if len(args) > 5:
        raise ValueError("an MH-Z19 command has at most 5 argument bytes")
    body = bytes([START, SENSOR_NUMBER, cmd]) + args.ljust(5, b"\0")
    return body + bytes([checksum(body)])


READ_CO2 = command(CMD_READ_CO2)
"""FF 01 86 00 00 00 00 00 79"""


@dataclass(frozen=True, slots=True)
class Mhz19Response:
    """One answer frame whose checksum passed."""

    raw: bytes

    @property
    def command(self) -> int:
        return self.raw[1]

    @property
    def co2_ppm(self) -> int:
        return self.raw[2] << 8 | self.raw[3]

    @property
    def temperature_c(self) -> int:
        """Byte 4 - 40: undocumented, commonly the sensor's temperature; for diagnostics only."""
        return self.raw[4] - 40


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What ``scan`` found: valid frames, the bytes to keep for later, rejected candidates, stray bytes."""

    frames: list[Mhz19Response] = field(default_factory=list)
    remainder: bytes = b""
    rejected: int = 0
    skipped: int = 0


def scan(buffer: bytes, cmd: int = CMD_READ_CO2) -> ScanResult:
    """Find every checksum-valid answer to ``cmd`` in ``buffer``; pure, never raises.

    A candidate starts at ``FF <cmd>``; one whose checksum fails is counted in ``rejected`` and the search
    resumes one byte later (the real frame may start inside it). ``remainder`` is an incomplete candidate
    at the end (or a lone trailing 0xFF) to prepend to the next bytes; everything else is ``skipped``.
    """
    header = bytes([START, cmd])
    frames: list[Mhz19Response] = []
    rejected = skipped = pos = covered = 0  # covered: end of the last rejected candidate, not garbage
    while True:
        start = buffer.find(header, pos)
        end = start if start >= 0 else max(pos, len(buffer) - 1 if buffer.endswith(b"\xff") else len(buffer))
        skipped += max(0, end - max(pos, covered))
        if start < 0:
            return ScanResult(frames, bytes(buffer[end:]), rejected, skipped)
        if start + FRAME_LEN > len(buffer):
            return ScanResult(frames, bytes(buffer[start:]), rejected, skipped)
        frame = bytes(buffer[start:start + FRAME_LEN])
        if frame[8] == checksum(frame):
            frames.append(Mhz19Response(frame))
            pos = start + FRAME_LEN
        else:
            rejected += 1
            pos, covered = start + 1, start + FRAME_LEN


def no_frame_reason(received: int, result: ScanResult, rejected: int, skipped: int) -> str:
    """Why no valid answer came, from what the read saw."""
    if received == 0:
        return "no answer"
    parts = []
    if rejected:
        parts.append(f"{rejected} frame(s) with bad checksum")
    if result.remainder:
        parts.append(f"partial frame ({len(result.remainder)} of {FRAME_LEN} bytes)")
    if skipped:
        parts.append(f"{skipped} bytes of garbage")
    return "no valid answer: " + ", ".join(parts)


class Mhz19Config(DriverConfig):
    """``port`` is the device path (a udev symlink such as /dev/ttyCO2 is stable across reboots)."""

    type: Literal["mhz19"] = "mhz19"
    port: str = Field(min_length=1)
    baudrate: int = Field(9600, gt=0)
    stuck_after_s: float = Field(STUCK_AFTER_S, ge=0, description="value frozen this long -> STALE; 0 = off")


class Mhz19Driver(Driver):
    """One MH-Z19B: a single channel named after the device, CO2 in ppm."""

    type_name = "mhz19"
    config_model = Mhz19Config
    nominal_period_s = 5.0
    cfg: Mhz19Config

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self._port = UartPort(self.cfg.port, self.cfg.baudrate)
        self._lock = asyncio.Lock()
        self._last_ppm: int | None = None
        self._changed_at_s = math.nan
        self.last_temperature_c: int | None = None
        return (self.spec("", "carbon_dioxide", "ppm", 0.0, VALID_MAX_PPM),)

    async def open(self) -> None:
        await self._port.open()

    async def close(self) -> None:
        self._port.close()

    async def read(self, t_s: float) -> list[Reading]:
        if not self._port.is_open:
            await self.open()
        async with self._lock:
            answer = await self._transact()
        if isinstance(answer, str):
            return self.faults(t_s, answer)
        self.last_temperature_c = answer.temperature_c
        return [self._reading(answer.co2_ppm, t_s)]

    async def _transact(self) -> Mhz19Response | str:
        """Send the read command and wait for its answer; the answer, or why there is none."""
        port = self._port
        if not await port.send_request(READ_CO2, GUARD_CHARS):
            return "read command not sent: output queue full"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + answer_window_s(self.cfg.timeout_s)
        result, received, rejected, skipped = ScanResult(), 0, 0, 0
        while True:
            data = port.drain()
            received += len(data)
            result = scan(result.remainder + data)
            rejected, skipped = rejected + result.rejected, skipped + result.skipped
            if result.frames:
                return result.frames[0]
            if not await port.wait_readable(deadline - loop.time()):
                return no_frame_reason(received, result, rejected, skipped)

    def _reading(self, ppm: int, t_s: float) -> Reading:
        spec = self.channels[0]
        if ppm != self._last_ppm:
            self._last_ppm, self._changed_at_s = ppm, t_s
        reading = check_range(spec, float(ppm), t_s)
        stuck_for = t_s - self._changed_at_s
        if reading.ok and self.cfg.stuck_after_s > 0 and stuck_for >= self.cfg.stuck_after_s:
            reason = f"{ppm} ppm unchanged for {stuck_for:.0f} s"
            return Reading(spec.name, float(ppm), spec.unit, t_s, Quality.STALE, reason)
        return reading

    async def set_abc(self, enabled: bool) -> None:
        """Switch automatic baseline correction (24 h zero to 400 ppm) on or off; unsuitable for a room
        that is never aired. Fire and forget: any reply is flushed by the next read."""
        await self._send(command(CMD_ABC, bytes([ABC_ON if enabled else 0x00])))

    async def calibrate_zero(self) -> None:
        """Declare the current air 400 ppm; only after >= 20 min in fresh outdoor air (manual)."""
        await self._send(command(CMD_ZERO_CALIBRATION))

    async def _send(self, frame: bytes) -> None:
        if not self._port.is_open:
            await self.open()
        async with self._lock:
            if self._port.write(frame) != len(frame):
                raise DriverError(f"{self.cfg.port}: command not sent, output queue full")
