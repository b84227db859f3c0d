"""Plantower PMS5003 particulate sensor on a UART (9600 baud 8N1), in its power-up active mode.

Source: Plantower PMS5003 data manual V2.3 (see /work/shared/notes/protocols.md). In active mode the sensor
streams a 32-byte frame on its own (every ~2.3 s when stable, 200-800 ms when the concentration changes):
``42 4D`` ("BM"), frame length 28, thirteen big-endian data words, a 16-bit checksum = sum of bytes 0..29.

Channels ``<name>_pm1_0``, ``<name>_pm2_5``, ``<name>_pm10`` in µg/m³ come from data words 4-6 (bytes
10-15), the "atmospheric environment" concentrations: words 1-3 (CF=1, "standard particle") are referred to
the factory's calibration aerosol, while words 4-6 are the manual's values for ambient air, which is what a
room is. Valid range 0..1000 µg/m³: the manual's effective range is 0-500 and its maximum range >= 1000.

Each read drains, without waiting, what arrived since the previous read and reports the newest valid frame;
only when nothing valid is pending (just after open, or a silent sensor) does it wait for a frame, at most a
share of ``timeout_s`` (default 3 s here, above the 2.3 s frame interval). No valid frame -> FAULT with the
reason (checksum failures, frames cut short, a frame still incomplete, garbage, nothing received). A frame
left incomplete is kept for the next read. A lost port raises DriverError.

Stuck detection compares whole frames: besides the masses a frame carries six particle counts per 0.1 L,
which jitter in any room air even when the masses sit at 0 µg/m³ for hours, so identical frames for
``stuck_after_s`` (default 10 min, 0 = off) mean a frozen sensor: its channels are marked STALE. A slow
drift is not visible in one sensor; it is left to the hub's plausibility checks.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from pydantic import Field

from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, Quality, Reading, check_range
from qrad_drivers.uart import UartPort, answer_window_s

FRAME_LEN = 32
START = b"BM"
LENGTH = 28
"""Frame length field: 13 data words + checksum = 2*13 + 2."""
VALID_MAX_UGM3 = 1000.0
STUCK_AFTER_S = 600.0
CHANNEL_KEYS = ("pm1_0", "pm2_5", "pm10")


def frame_checksum(frame: bytes) -> int:
    """Sum of bytes 0..29, modulo 2**16."""
    return sum(frame[:30]) & 0xFFFF


@dataclass(frozen=True, slots=True)
class Pms5003Frame:
    """One 32-byte frame whose start, length and checksum passed."""

    raw: bytes

    def word(self, index: int) -> int:
        """Data word ``index`` (1..13, as the manual numbers them)."""
        return int.from_bytes(self.raw[2 + 2 * index:4 + 2 * index], "big")

    @property
    def pm_standard(self) -> tuple[int, int, int]:
        """PM1.0, PM2.5, PM10 in µg/m³, CF=1 (factory calibration aerosol)."""
        return self.word(1), self.word(2), self.word(3)

    @property
    def pm_atmospheric(self) -> tuple[int, int, int]:
        """PM1.0, PM2.5, PM10 in µg/m³ under atmospheric environment: the channel values."""
        return self.word(4), self.word(5), self.word(6)

    @property
    def counts(self) -> tuple[int, ...]:
        """Particles per 0.1 L above 0.3, 0.5, 1.0, 2.5, 5.0 and 10 µm."""
        return tuple(self.word(i) for i in range(7, 13))

    @property
    def data(self) -> bytes:
        """The 13 data words, to tell a frozen sensor from a live one."""
        return self.raw[4:30]


@dataclass(slots=True)
class ParserStats:
    """Cumulative counters of what the parser rejected or skipped."""

    frames: int = 0
    bad_checksum: int = 0
    truncated: int = 0
    bad_length: int = 0
    skipped_bytes: int = 0


class Pms5003Parser:
    """Streaming frame parser: ``feed`` bytes as they come, get every valid frame; never raises.

    A candidate starts at ``BM``; a wrong length field, or a checksum failure, rejects it and the search
    resumes one byte later. A failed candidate holding another ``BM`` was cut short by the next frame
    (``truncated``), otherwise it counts as ``bad_checksum``. An incomplete candidate at the end of the
    bytes is kept (at most 31 bytes) and completed by the next ``feed``.
    """

    def __init__(self) -> None:
        self.stats = ParserStats()
        self._buffer = b""

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame kept for the next feed."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget an incomplete frame (after a flush or reopen)."""
        self._buffer = b""

    def feed(self, data: bytes) -> list[Pms5003Frame]:
        buf = self._buffer + bytes(data)
        frames: list[Pms5003Frame] = []
        pos = covered = 0  # covered: end of the last rejected candidate, whose bytes are not garbage
        while True:
            start = buf.find(START, pos)
            end = start if start >= 0 else max(pos, len(buf) - 1 if buf.endswith(START[:1]) else len(buf))
            self.stats.skipped_bytes += max(0, end - max(pos, covered))
            if start < 0 or start + 4 > len(buf):
                break
            if int.from_bytes(buf[start + 2:start + 4], "big") != LENGTH:
                self.stats.bad_length += 1
                pos, covered = start + 1, max(covered, start + 4)
                continue
            if start + FRAME_LEN > len(buf):
                break
            frame = buf[start:start + FRAME_LEN]
            if int.from_bytes(frame[30:32], "big") == frame_checksum(frame):
                frames.append(Pms5003Frame(frame))
                self.stats.frames += 1
                pos = start + FRAME_LEN
            else:
                if START in frame[2:]:
                    self.stats.truncated += 1
                else:
                    self.stats.bad_checksum += 1
                pos, covered = start + 1, start + FRAME_LEN
        self._buffer = buf[end:]
        return frames


def no_frame_reason(before: ParserStats, after: ParserStats, pending: int, received: int) -> str:
    """Why a read found no valid frame, from the parser's counters before and after it."""
    if received == 0 and pending == 0:
        return "nothing received"
    delta = {f.name: getattr(after, f.name) - getattr(before, f.name) for f in fields(ParserStats)}
    parts = []
    if delta["bad_checksum"]:
        parts.append(f"{delta['bad_checksum']} frame(s) with bad checksum")
    if delta["truncated"]:
        parts.append(f"{delta['truncated']} partial frame(s) cut short")
    if delta["bad_length"]:
        parts.append(f"{delta['bad_length']} bad length field(s)")
    if pending:
        parts.append(f"partial frame pending ({pending} of {FRAME_LEN} bytes)")
    if delta["skipped_bytes"]:
        parts.append(f"{delta['skipped_bytes']} bytes of garbage")
    return "no valid frame: " + ", ".join(parts or ["nothing new received"])


class Pms5003Config(DriverConfig):
    """``port`` is the device path; ``timeout_s`` defaults above the sensor's 2.3 s frame interval."""

    type: Literal["pms5003"] = "pms5003"
    port: str = Field(min_length=1)
    baudrate: int = Field(9600, gt=0)
    timeout_s: float = Field(3.0, gt=0)
    stuck_after_s: float = Field(STUCK_AFTER_S, ge=0, description="identical frames this long -> STALE; 0 = off")


class Pms5003Driver(Driver):
    """One PMS5003 in active mode: PM1.0, PM2.5 and PM10 (atmospheric environment), µg/m³."""

    type_name = "pms5003"
    config_model = Pms5003Config
    nominal_period_s = 5.0
    cfg: Pms5003Config

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self._port = UartPort(self.cfg.port, self.cfg.baudrate)
        self.parser = Pms5003Parser()
        self._last_data: bytes | None = None
        self._changed_at_s = math.nan
        return tuple(self.spec(key, "particulate_matter", "µg/m³", 0.0, VALID_MAX_UGM3) for key in CHANNEL_KEYS)

    async def open(self) -> None:
        await self._port.open()
        self._port.reset_input()  # frames queued while closed are old: report only what comes next
        self.parser.reset()

    async def close(self) -> None:
        self._port.close()

    async def read(self, t_s: float) -> list[Reading]:
        if not self._port.is_open:
            await self.open()
        before = replace(self.parser.stats)
        data = self._port.drain()
        received = len(data)
        frames = self.parser.feed(data)
        if not frames:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + answer_window_s(self.cfg.timeout_s)
            while not frames and await self._port.wait_readable(deadline - loop.time()):
                data = self._port.drain()
                received += len(data)
                frames = self.parser.feed(data)
        if not frames:
            return self.faults(t_s, no_frame_reason(before, self.parser.stats, self.parser.pending, received))
        return self._readings(frames[-1], t_s)

    def _readings(self, frame: Pms5003Frame, t_s: float) -> list[Reading]:
        if frame.data != self._last_data:
            self._last_data, self._changed_at_s = frame.data, t_s
        stuck_for = t_s - self._changed_at_s
        stuck = self.cfg.stuck_after_s > 0 and stuck_for >= self.cfg.stuck_after_s
        readings = []
        for spec, value in zip(self.channels, frame.pm_atmospheric, strict=True):
            reading = check_range(spec, float(value), t_s)
            if reading.ok and stuck:
                reason = f"identical frames for {stuck_for:.0f} s"
                reading = Reading(spec.name, float(value), spec.unit, t_s, Quality.STALE, reason)
            readings.append(reading)
        return readings
