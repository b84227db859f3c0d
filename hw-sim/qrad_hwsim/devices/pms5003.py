"""A Plantower PMS5003 particulate sensor on a pseudo-terminal, streaming frames in active mode.

Protocol (Plantower PMS5003 manual V2.3): 32-byte frames ``42 4D 00 1C`` + 13 big-endian words + a 16-bit
checksum (sum of bytes 0..29). Words 1-3 are PM1.0/PM2.5/PM10 at CF=1, words 4-6 the same under
"atmospheric environment", words 7-12 particle counts per 0.1 L, word 13 reserved. This emulation puts the
same masses in both triples and derives plausible (not calibrated) counts from PM2.5 with Poisson noise,
so a live stream never repeats a frame. The heater simulation sets ``pm1_0``, ``pm2_5`` and ``pm10``
(µg/m³); each frame adds Gaussian noise of ``noise_ugm3`` (0 for exact tests).

A frame goes out every ``interval_s`` (default 1 s; the real sensor: 2.3 s stable, 0.2-0.8 s fast) while in
active mode and awake; ``emit()`` sends one at once, for tests that want exact control. Host commands
(``42 4D CMD DH DL CS``) are obeyed without acknowledgement: E1 passive/active, E2 read in passive mode,
E4 sleep/wake.

Faults (``set_fault``):
    ok            normal frames
    unplugged     no frames
    garbage       32 random bytes (never 0x42, so never a frame) instead of each frame
    partial       each frame cut after 4-31 bytes (the next one follows)
    bad_checksum  frames with a wrong checksum
    stuck         the last frame sent, repeated byte for byte, deaf to the pm attributes
    out_of_range  0xFFFF µg/m³ in every mass field
    spike         every ``spike_every``-th frame carries SPIKE_UGM3 in every mass field
    drift         masses plus ``drift_ugm3_per_min`` times the minutes since the fault was set
    noisy         1-40 random bytes (any value) before each valid frame: the driver must resynchronise
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import numpy as np

from .uart_pty import UartDevice

FRAME_LEN = 32
START = b"BM"
LENGTH = 28
OUT_OF_RANGE_UGM3 = 0xFFFF
SPIKE_UGM3 = 9999
"""Ten times the manual's maximum range (1000 µg/m³)."""
COUNTS_PER_UGM3 = (60.0, 18.0, 4.0, 0.5, 0.1, 0.03)
"""Particles per 0.1 L above 0.3/0.5/1/2.5/5/10 µm per µg/m³ of PM2.5 (+1): an illustrative shape."""
CMD_MODE, CMD_READ, CMD_SLEEP = 0xE1, 0xE2, 0xE4


def build_frame(masses: tuple[int, int, int], counts: tuple[int, ...]) -> bytes:
    """A valid frame with ``masses`` in both the CF=1 and the atmospheric triple."""
    words = [*masses, *masses, *counts, 0]
    body = START + LENGTH.to_bytes(2, "big") + b"".join(min(max(int(w), 0), 0xFFFF).to_bytes(2, "big")
                                                        for w in words)
    return body + (sum(body) & 0xFFFF).to_bytes(2, "big")


class Pms5003Device(UartDevice):
    """The emulated sensor at ``link_path``; the simulation sets ``pm1_0``, ``pm2_5``, ``pm10``."""

    def __init__(self, link_path: str | os.PathLike[str] | None, rng: np.random.Generator | None = None,
                 clock: Callable[[], float] | None = None, *, interval_s: float = 1.0,
                 noise_ugm3: float = 1.0) -> None:
        super().__init__(link_path, rng, clock)
        self.pm1_0, self.pm2_5, self.pm10 = 5.0, 8.0, 12.0
        self.noise_ugm3 = noise_ugm3
        self.interval_s = interval_s
        self.drift_ugm3_per_min = 1.0
        self.spike_every = 3
        self.active = True
        self.sleeping = False
        self.frames_sent = 0
        self.last_frame: bytes | None = None
        self._frozen: bytes | None = None
        self._pending = b""

    async def serve(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.active and not self.sleeping:
                self.emit()

    def on_fault(self, kind: str) -> None:
        if kind == "stuck":
            self._frozen = self.last_frame if self.last_frame is not None else self._frame()

    def emit(self) -> bytes:
        """Send the next frame now, as the current fault shapes it; the bytes sent."""
        data = self.next_bytes()
        self.send(data)
        self.frames_sent += 1
        return data

    def next_bytes(self) -> bytes:
        if self.fault == "unplugged":
            return b""
        if self.fault == "garbage":
            return self.garbage(FRAME_LEN, exclude=START[0])
        frame = self._frozen if self.fault == "stuck" and self._frozen is not None else self._frame()
        self.frames_in_fault += 1
        self.last_frame = frame
        if self.fault == "partial":
            return frame[:int(self.rng.integers(4, FRAME_LEN))]
        if self.fault == "bad_checksum":
            bad = (int.from_bytes(frame[30:], "big") + int(self.rng.integers(1, 0x10000))) & 0xFFFF
            return frame[:30] + bad.to_bytes(2, "big")
        if self.fault == "noisy":
            return self.rng.bytes(int(self.rng.integers(1, 41))) + frame
        return frame

    def _frame(self) -> bytes:
        if self.fault == "out_of_range":
            masses = (OUT_OF_RANGE_UGM3,) * 3
        elif self.fault == "spike" and self.frames_in_fault % max(1, self.spike_every) == self.spike_every - 1:
            masses = (SPIKE_UGM3,) * 3
        else:
            masses = self._masses()
        counts = tuple(int(self.rng.poisson(k * (self.pm2_5 + 1.0))) for k in COUNTS_PER_UGM3)
        return build_frame(masses, counts)

    def _masses(self) -> tuple[int, int, int]:
        offset = 0.0
        if self.fault == "drift":
            offset = self.drift_ugm3_per_min * (self.now() - self.fault_since_s) / 60.0
        values = []
        for value in (self.pm1_0, self.pm2_5, self.pm10):
            if self.noise_ugm3 > 0:
                value += float(self.rng.normal(0.0, self.noise_ugm3))
            values.append(max(0, int(round(value + offset))))
        return values[0], values[1], values[2]

    def on_bytes(self, data: bytes) -> None:
        buf = self._pending + data
        pos = 0
        while (start := buf.find(START, pos)) >= 0 and start + 7 <= len(buf):
            cmd = buf[start:start + 7]
            if int.from_bytes(cmd[5:7], "big") == sum(cmd[:5]) & 0xFFFF:
                self._command(cmd[2], cmd[4])
                pos = start + 7
            else:
                pos = start + 1
        self._pending = buf[max(pos, len(buf) - 6):]  # at most a command's first 6 bytes

    def _command(self, cmd: int, value: int) -> None:
        if cmd == CMD_MODE:
            self.active = value == 1
        elif cmd == CMD_READ and not self.active and not self.sleeping:
            self.emit()
        elif cmd == CMD_SLEEP:
            self.sleeping = value == 0
