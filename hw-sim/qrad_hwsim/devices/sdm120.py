"""Eastron SDM120 single-phase energy meter, answering Modbus RTU on a pseudo-terminal.

Wire format (shared/notes/protocols.md, "Eastron SDM120"): measurements are input registers read with
function 0x04, each an IEEE-754 float32 in two registers, big-endian, high word first (ABCD); frames end
with the Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF, low byte first). Register map served:
voltage 0x00, current 0x06, active power 0x0C, apparent 0x12, reactive 0x18, power factor 0x1E, phase
angle 0x24, frequency 0x46, import/export kWh 0x48/0x4A, total kWh 0x156; other registers read as 0.
A request for more than 80 registers (40 values: the limit of Eastron's protocol PDFs, to verify) or past
the map gets exception 02; any function but 0x04 gets exception 01 (the holding-register set-up of the
real meter is not emulated).

The responder is our own, not a Modbus library's server: it serves the pty master, and the line faults act
on bytes (silence, a wrong CRC, noise, a stray byte, a late answer) below where a server stack works. Its
CRC and word order are written independently of the driver's (drivers/modbus_rtu.py), so each checks the
other. Requests are framed by length (8 bytes for
functions 1-6), not by the 3.5-character silence, so it works the same on a virtual-time loop.

``run()`` creates the pty, points ``link_path`` (e.g. ``<root>/dev/ttyMETER``) at its slave side and
answers until cancelled; then the link and the pty are gone, as when a USB adapter is pulled.
The heater simulation calls ``update(power_w, dt_s)`` each step, or sets ``voltage_v``, ``current_a``,
``power_w``, ``power_factor``, ``frequency_hz``, ``energy_kwh`` (total), ``import_kwh``, ``export_kwh``.

Faults (``set_fault``): "ok"; "unplugged" (no answer); "bad_checksum" (answers with a corrupted CRC);
"garbage" (random bytes instead of answers); "busy" (exception 06, server busy); "stuck" (registers
frozen at the moment of the fault); "out_of_range" (finite impossible values: 480 V, 0 Hz, 300 A, 1 MW);
"nan" (every value 0xFFFFFFFF, as erased memory reads); "spike" (every second read of the power register
shows + 20 kW); "drift" (the power reading's gain grows by ``drift_per_s`` per simulated second since
the fault, simulated time being what ``update`` was given); "late" (each answer is held back and goes out
when the next request arrives, i.e. while that request is still on the line; a held answer is still sent
on the first request after the fault clears, before that request's own answer); "turnaround_glitch" (a
0x00 byte before each answer, as an RS-485 transceiver switching direction often leaves);
"wrong_function" (answers with function code 0x03 instead of 0x04, CRC valid).

Timing: an answer goes out after the request's time on the line plus 3.5 characters (`TURNAROUND_CHARS`)
at ``baudrate``, scheduled on the event loop (so it works on a virtual-time loop too); the answer itself
arrives at once (a pty has no line speed).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import struct
import tty
from pathlib import Path

import numpy as np

SDM120_FAULTS = ("ok", "unplugged", "bad_checksum", "garbage", "busy", "stuck", "out_of_range", "nan",
                 "spike", "drift", "late", "turnaround_glitch", "wrong_function")
TURNAROUND_CHARS = 3.5
"""A slave answers only after the request has been on the line and 3.5 characters of silence (Modbus over
Serial Line V1.02 §2.5.1.1); the emulation waits that long (11-bit characters) before answering."""
REGISTER_SPACE = 0x0160  # registers 0x0000..0x015F exist; reads past them get exception 02
MAX_REGISTERS_PER_REQUEST = 80
FIXED_LENGTH_FUNCTIONS = (1, 2, 3, 4, 5, 6)  # request = unit, fc, 2x u16, CRC: 8 bytes
NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
SPIKE_W = 20000.0
OUT_OF_RANGE = {"voltage_v": 480.0, "current_a": 300.0, "power_w": 1.0e6, "frequency_hz": 0.0}
NAN_WORDS = b"\xff\xff\xff\xff"


def crc16_modbus(data: bytes) -> int:
    """Modbus RTU CRC-16: reflected poly 0xA001, init 0xFFFF; sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    """``frame`` followed by its CRC, low byte first."""
    return frame + struct.pack("<H", crc16_modbus(frame))


def pack_float32(value: float) -> bytes:
    """``value`` as a big-endian float32; beyond float32's range it saturates to ±inf."""
    try:
        return struct.pack(">f", value)
    except OverflowError:
        return struct.pack(">f", math.copysign(math.inf, value))


class Sdm120Device:
    """One emulated SDM120 meter on a pty; see the module docstring."""

    def __init__(self, link_path: Path | str, unit_id: int = 1, baudrate: int = 2400,
                 rng: np.random.Generator | None = None) -> None:
        self.link_path = Path(link_path)
        self.unit_id = unit_id
        self.baudrate = baudrate  # sets the answer delay (the request's line time + turnaround)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.voltage_v, self.frequency_hz, self.power_factor = NOMINAL_V, NOMINAL_HZ, 0.97
        self.power_w = self.current_a = 0.0
        self.energy_kwh = self.import_kwh = self.export_kwh = 0.0
        self.voltage_noise_v, self.frequency_noise_hz, self.drift_per_s = 0.4, 0.01, 0.02
        self.fault = "ok"
        self.sim_time_s = 0.0
        self.requests = self.answers = 0
        self.ready = asyncio.Event()
        self.port_path: str | None = None
        self._fault_since_s = 0.0
        self._frozen: bytes | None = None
        self._power_reads = 0
        self._rx = bytearray()
        self._master = -1
        self._held: bytes | None = None

    # ---- the heater simulation's side ----------------------------------------------------------
    def update(self, power_w: float, dt_s: float) -> None:
        """Advance ``dt_s``: mains voltage and frequency jitter, current from P/(V·PF), energy integrates."""
        self.sim_time_s += dt_s
        self.voltage_v = NOMINAL_V + float(self.rng.normal(0.0, self.voltage_noise_v))
        self.frequency_hz = NOMINAL_HZ + float(self.rng.normal(0.0, self.frequency_noise_hz))
        self.power_w = float(power_w)
        self.current_a = abs(self.power_w) / (self.voltage_v * self.power_factor)
        kwh = abs(self.power_w) * dt_s / 3.6e6
        if self.power_w >= 0:
            self.import_kwh += kwh
        else:
            self.export_kwh += kwh
        self.energy_kwh += kwh  # Eastron "total" = import + export

    def set_fault(self, kind: str) -> None:
        """Switch to fault ``kind`` (one of SDM120_FAULTS); "ok" clears."""
        if kind not in SDM120_FAULTS:
            raise ValueError(f"SDM120 fault must be one of {SDM120_FAULTS}, not {kind!r}")
        self.fault, self._fault_since_s, self._power_reads = kind, self.sim_time_s, 0
        self._frozen = self.register_image() if kind == "stuck" else None

    def values(self) -> dict[int, float]:
        """Register address -> float the meter shows now (true values, before faults)."""
        apparent = self.voltage_v * self.current_a
        reactive = math.sqrt(max(0.0, apparent * apparent - self.power_w * self.power_w))
        return {0x00: self.voltage_v, 0x06: self.current_a, 0x0C: self.power_w, 0x12: apparent,
                0x18: reactive, 0x1E: self.power_factor,
                0x24: math.degrees(math.acos(max(-1.0, min(1.0, self.power_factor)))),
                0x46: self.frequency_hz, 0x48: self.import_kwh, 0x4A: self.export_kwh, 0x156: self.energy_kwh}

    def register_image(self, spike: bool = False) -> bytes:
        """The whole input-register space as served now, faults applied (2 bytes per register);
        ``spike`` adds SPIKE_W to the active power."""
        if self._frozen is not None:
            return self._frozen
        shown = self.values()
        if self.fault == "out_of_range":
            shown.update({0x00: OUT_OF_RANGE["voltage_v"], 0x06: OUT_OF_RANGE["current_a"],
                          0x0C: OUT_OF_RANGE["power_w"], 0x46: OUT_OF_RANGE["frequency_hz"]})
        elif spike:
            shown[0x0C] += SPIKE_W
        elif self.fault == "drift":
            shown[0x0C] *= 1.0 + self.drift_per_s * (self.sim_time_s - self._fault_since_s)
        image = bytearray(2 * REGISTER_SPACE)
        for address, value in shown.items():
            word = NAN_WORDS if self.fault == "nan" else pack_float32(value)
            image[2 * address:2 * address + 4] = word
        return bytes(image)

    def status(self) -> dict[str, object]:
        """Plain values for logs and the CLI."""
        return {"port": self.port_path, "link": str(self.link_path), "fault": self.fault,
                "requests": self.requests, "answers": self.answers}

    # ---- the line side -------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve on a fresh pty until cancelled; the link and the pty are removed on the way out."""
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no CR/LF mangling before the client configures the port
            os.set_blocking(master, False)
            self._master, self.port_path = master, os.ttyname(slave)
            self._publish_link(self.port_path)
            loop.add_reader(master, self._on_readable)
            self.ready.set()
            await asyncio.Future()  # until cancelled
        finally:
            self.ready.clear()
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(master)
            self.link_path.unlink(missing_ok=True)
            os.close(master)
            os.close(slave)
            self._master, self.port_path = -1, None
            self._rx.clear()
            self._held = None

    def _publish_link(self, target: str) -> None:
        self.link_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link_path.with_name(self.link_path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        tmp.replace(self.link_path)

    def _on_readable(self) -> None:
        try:
            self._rx += os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO while no one holds the slave: nothing to read
            return
        for request in self._take_requests():
            self._answer(request)

    def _take_requests(self) -> list[bytes]:
        """Complete requests with a valid CRC; a frame with a bad CRC is skipped byte by byte, as a
        receiver hunting for the next frame start does."""
        found: list[bytes] = []
        while len(self._rx) >= 4:
            size = 8 if self._rx[1] in FIXED_LENGTH_FUNCTIONS else len(self._rx)
            if len(self._rx) < size:
                break
            frame = bytes(self._rx[:size])
            if crc16_modbus(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]:
                found.append(frame)
                del self._rx[:size]
            else:
                del self._rx[0]
        return found

    def _answer(self, request: bytes) -> None:
        self.requests += 1
        if request[0] != self.unit_id or self.fault == "unplugged":
            return  # another unit's request, a broadcast (no answer by rule), or a dead line
        if self._held is not None:  # the late answer to the previous request, as this one goes out
            self._write(self._held)
            self._held = None
        pdu = self._pdu(request)
        if self.fault == "wrong_function" and pdu[0] == 0x04:
            pdu = bytes([0x03]) + pdu[1:]
        reply = with_crc(bytes([self.unit_id]) + pdu)
        if self.fault == "bad_checksum":
            reply = reply[:-2] + bytes([reply[-2] ^ 0xFF, reply[-1] ^ 0x5A])
        elif self.fault == "garbage":
            reply = self.rng.integers(0, 256, int(self.rng.integers(3, 40)), dtype=np.uint8).tobytes()
        elif self.fault == "turnaround_glitch":
            reply = b"\x00" + reply
        self.answers += 1
        if self.fault == "late":
            self._held = reply
            return
        delay_s = (len(request) + TURNAROUND_CHARS) * 11 / self.baudrate
        asyncio.get_running_loop().call_later(delay_s, self._write, reply)

    def _write(self, reply: bytes) -> None:
        if self._master < 0:
            return  # the pty is gone (unplugged meanwhile)
        with contextlib.suppress(BlockingIOError, OSError):  # nobody reading: the bytes are lost
            os.write(self._master, reply)

    def _pdu(self, request: bytes) -> bytes:
        function = request[1]
        if function != 0x04:
            return bytes([function | 0x80, 0x01])  # illegal function
        address, count = struct.unpack(">HH", request[2:6])
        if not 1 <= count <= MAX_REGISTERS_PER_REQUEST or address + count > REGISTER_SPACE:
            return bytes([0x84, 0x02])  # illegal data address
        if self.fault == "busy":
            return bytes([0x84, 0x06])  # server device busy
        spike = False
        if self.fault == "spike" and address <= 0x0C < address + count:
            self._power_reads += 1
            spike = self._power_reads % 2 == 1  # the first power read after the fault, the third ...
        data = self.register_image(spike)[2 * address:2 * (address + count)]
        return bytes([0x04, len(data)]) + data
