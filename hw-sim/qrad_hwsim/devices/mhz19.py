"""An MH-Z19B CO2 sensor on a pseudo-terminal: answers read commands with the room's CO2.

Protocol (Winsen MH-Z19B manual): 9-byte frames, checksum = minus the sum of bytes 1..7 modulo 256. The
device answers ``FF 01 86 ...`` (read) with ``FF 86 HH LL T+40 00 00 00 CS``; it records ABC on/off
(0x79) and zero calibrations (0x87) without answering them, and ignores anything else, as it sends
nothing unsolicited. The heater simulation sets ``co2_ppm`` (and ``temperature_c``); each answer adds
Gaussian noise of ``noise_ppm`` (a real sensor jitters by a few ppm; set 0 for exact tests).

Faults (``set_fault``):
    ok            normal answers
    unplugged     no answer at all (the adapter is there, the sensor is not)
    garbage       random bytes (1-18, never 0xFF, so never a frame) instead of the answer
    partial       the answer cut after 1-8 bytes
    bad_checksum  the answer with a wrong checksum byte
    stuck         the last value answered, frozen, no noise, deaf to ``co2_ppm``
    out_of_range  0xFFFF ppm
    spike         every ``spike_every``-th answer carries SPIKE_PPM, the others are normal
    drift         the value plus ``drift_ppm_per_min`` times the minutes since the fault was set
    noisy         random bytes (any value) before each valid answer: the driver must resynchronise
    late          each answer held back and sent when the next read command arrives (while that command
                  is on the line); a held answer still goes out on the first command after the fault
                  clears, before that command's own answer

Timing: an answer goes out ``latency_s`` after the command arrives; the default is the command's 9
characters on the line at ``baudrate`` plus 3 characters of processing (a pty delivers at once, a real
line does not).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import numpy as np

from .uart_pty import COMMON_FAULTS, UartDevice

FRAME_LEN = 9
START = 0xFF
CMD_READ = 0x86
CMD_ABC = 0x79
CMD_ZERO = 0x87
OUT_OF_RANGE_PPM = 0xFFFF
SPIKE_PPM = 40000
"""Eight times the default 5000 ppm range: absurd for any room."""


def checksum(frame: bytes) -> int:
    return -sum(frame[1:8]) & 0xFF


def answer_frame(ppm: int, temperature_c: float) -> bytes:
    """``FF 86 HH LL T+40 00 00 00 CS`` for ``ppm`` (clamped to 16 bits)."""
    ppm = min(max(int(ppm), 0), 0xFFFF)
    temp = min(max(int(round(temperature_c + 40)), 0), 0xFF)
    body = bytes([START, CMD_READ, ppm >> 8, ppm & 0xFF, temp, 0, 0, 0])
    return body + bytes([checksum(body)])


class Mhz19Device(UartDevice):
    """The emulated sensor at ``link_path``; the simulation sets ``co2_ppm`` and ``temperature_c``."""

    faults = COMMON_FAULTS + ("late",)

    def __init__(self, link_path: str | os.PathLike[str] | None, rng: np.random.Generator | None = None,
                 clock: Callable[[], float] | None = None, *, co2_ppm: float = 450.0,
                 noise_ppm: float = 3.0) -> None:
        super().__init__(link_path, rng, clock)
        self.co2_ppm = co2_ppm
        self.temperature_c = 22.0
        self.noise_ppm = noise_ppm
        self.drift_ppm_per_min = 50.0
        self.spike_every = 3
        self.baudrate = 9600
        self.latency_s = (FRAME_LEN + 3) * 10 / self.baudrate
        self._held: bytes | None = None
        self.abc_enabled = True
        self.zero_calibrations = 0
        self.requests = 0
        self.last_ppm: int | None = None
        self._frozen_ppm: int | None = None
        self._pending = b""

    def on_fault(self, kind: str) -> None:
        if kind == "stuck":
            self._frozen_ppm = self.last_ppm if self.last_ppm is not None else int(round(self.co2_ppm))

    def on_bytes(self, data: bytes) -> None:
        buf = self._pending + data
        pos = 0
        while (start := buf.find(bytes([START]), pos)) >= 0 and start + FRAME_LEN <= len(buf):
            frame = buf[start:start + FRAME_LEN]
            if frame[8] == checksum(frame) and frame[1] == 0x01:
                self._command(frame)
                pos = start + FRAME_LEN
            else:
                pos = start + 1
        start = buf.find(bytes([START]), pos)
        self._pending = buf[start:] if start >= 0 else b""

    def _command(self, frame: bytes) -> None:
        if frame[2] == CMD_ABC:
            self.abc_enabled = frame[3] == 0xA0
        elif frame[2] == CMD_ZERO:
            self.zero_calibrations += 1
        elif frame[2] == CMD_READ:
            self.requests += 1
            if self._held is not None:
                self.send(self._held)
                self._held = None
            answer = self.answer()
            if not answer:
                return
            if self.fault == "late":
                self._held = answer
                return
            if self.latency_s > 0:
                asyncio.get_running_loop().call_later(self.latency_s, self.send, answer)
            else:
                self.send(answer)

    def value_ppm(self) -> int:
        """The CO2 value of the next answer, with noise, drift, spike or freezing as the fault says."""
        if self.fault == "stuck" and self._frozen_ppm is not None:
            return self._frozen_ppm
        if self.fault == "out_of_range":
            return OUT_OF_RANGE_PPM
        if self.fault == "spike" and self.frames_in_fault % max(1, self.spike_every) == self.spike_every - 1:
            return SPIKE_PPM
        value = self.co2_ppm
        if self.noise_ppm > 0:
            value += float(self.rng.normal(0.0, self.noise_ppm))
        if self.fault == "drift":
            value += self.drift_ppm_per_min * (self.now() - self.fault_since_s) / 60.0
        return min(max(int(round(value)), 0), 0xFFFF)

    def answer(self) -> bytes:
        """The bytes sent for one read request under the current fault (empty for none)."""
        if self.fault == "unplugged":
            return b""
        if self.fault == "garbage":
            return self.garbage(int(self.rng.integers(1, 19)), exclude=START)
        ppm = self.value_ppm()
        self.frames_in_fault += 1
        self.last_ppm = ppm
        frame = answer_frame(ppm, self.temperature_c)
        if self.fault == "partial":
            return frame[:int(self.rng.integers(1, FRAME_LEN))]
        if self.fault == "bad_checksum":
            return frame[:8] + bytes([(frame[8] + int(self.rng.integers(1, 256))) & 0xFF])
        if self.fault == "noisy":
            return self.rng.bytes(int(self.rng.integers(1, 19))) + frame
        return frame
