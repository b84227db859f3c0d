"""Modbus RTU master framing for "read input registers" (function 0x04): requests, CRC, and a reply scanner
that sets aside anything that is not the answer to the request just sent.

Source: Modbus over Serial Line Specification and Implementation Guide V1.02 (modbus.org, 2006): an RTU
frame is address, function, data, CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF, low byte first);
frames are separated by at least 3.5 character times of silence (§2.5.1.1), so a slave cannot start its
answer before the request has been on the line and 3.5 characters have passed. Reply to 0x04: address,
0x04, byte count (2 x registers), the registers big-endian; exception reply: address, 0x84, exception code.

`scan_reply` hunts for the reply byte by byte: a candidate starts at the expected unit id; its length is
known from the function code and byte count; its CRC must match. A leading junk byte (e.g. the 0x00 an
RS-485 transceiver's turnaround often leaves) is skipped and counted. A CRC-valid frame from our unit with
another function code (0x03 to a 0x04 request) or another byte count (the answer to another request) is
refused, never decoded, and the search goes on after it; the reason is reported if no answer follows. The
caller flushes the line before each request and discards what
arrives while its request is still being sent (`qrad_drivers.uart.UartPort.send_request`): a late answer to
an earlier request cannot be told apart by content (RTU frames carry no transaction id), only by time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_INPUT_REGISTERS = 0x04
EXCEPTION_BIT = 0x80
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 6: "server device busy"}
MAX_REGISTERS = 125
"""Most registers one 0x04 request may ask for (Modbus Application Protocol V1.1b3, §6.4)."""


def crc16(data: bytes) -> int:
    """Modbus CRC-16 of ``data``: reflected polynomial 0xA001, initial value 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first."""
    return body + struct.pack("<H", crc16(body))


def read_input_registers_request(unit: int, start: int, count: int) -> bytes:
    """The 8-byte request for ``count`` input registers from ``start``. Raises ValueError out of range."""
    if not 1 <= unit <= 247 or not 0 <= start <= 0xFFFF or not 1 <= count <= MAX_REGISTERS:
        raise ValueError(f"bad request: unit {unit}, start {start}, count {count}")
    return frame(struct.pack(">BBHH", unit, READ_INPUT_REGISTERS, start, count))


@dataclass(frozen=True, slots=True)
class Scan:
    """What `scan_reply` found in the bytes so far.

    ``registers``: the answer (done); ``error``: an exception reply from our unit (done); neither: keep
    reading. ``refused``: why each CRC-valid frame that is not the answer was set aside (another function
    code, another byte count); ``skipped``: stray bytes; ``bad_crc``: candidates whose CRC failed;
    ``partial``: bytes from the first incomplete candidate to the end.
    """

    registers: tuple[int, ...] | None = None
    error: str | None = None
    refused: tuple[str, ...] = ()
    skipped: int = 0
    bad_crc: int = 0
    partial: int = 0

    @property
    def done(self) -> bool:
        return self.registers is not None or self.error is not None


def _candidate_length(buf: bytes, at: int) -> int | None:
    """The length of the frame starting at ``buf[at]`` (its unit id), or None until enough bytes are in."""
    if at + 2 > len(buf):
        return None
    if buf[at + 1] & EXCEPTION_BIT:
        return 5
    if at + 3 > len(buf):
        return None
    return 5 + buf[at + 2]  # address, function, byte count, data, CRC (functions 1-4 all answer this way)


def scan_reply(buf: bytes, unit: int, count: int) -> Scan:
    """Look for the answer of ``unit`` to a 0x04 request for ``count`` registers in ``buf``; pure, never
    raises. Every position holding ``unit`` is a candidate; an incomplete one does not stop the search (it
    may be junk that only looks like a long frame's start). See the module docstring."""
    skipped = bad_crc = 0
    refused: list[str] = []
    first_incomplete: int | None = None
    at = 0
    while at < len(buf):
        if buf[at] != unit:
            at += 1
            if first_incomplete is None:
                skipped += 1
            continue
        length = _candidate_length(buf, at)
        if length is None or at + length > len(buf):
            first_incomplete = at if first_incomplete is None else first_incomplete
            at += 1
            continue
        candidate = buf[at:at + length]
        if crc16(candidate[:-2]) != struct.unpack("<H", candidate[-2:])[0]:
            bad_crc += first_incomplete is None
            skipped += first_incomplete is None
            at += 1  # the real frame may start inside this one
            continue
        function = candidate[1]
        if function == READ_INPUT_REGISTERS | EXCEPTION_BIT:
            code = candidate[2]
            return Scan(error=f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})", refused=tuple(refused),
                        skipped=skipped, bad_crc=bad_crc)
        if function == READ_INPUT_REGISTERS and candidate[2] == 2 * count:
            registers = struct.unpack(f">{count}H", candidate[3:-2])
            return Scan(registers=registers, refused=tuple(refused), skipped=skipped, bad_crc=bad_crc)
        if function != READ_INPUT_REGISTERS:
            refused.append(f"a frame with function code 0x{function:02X} (expected 0x04)")
        else:
            refused.append(f"a frame with {candidate[2]} data bytes (expected {2 * count}: "
                           "the answer to another request)")
        first_incomplete = None
        at += length
    partial = len(buf) - first_incomplete if first_incomplete is not None else 0
    return Scan(refused=tuple(refused), skipped=skipped, bad_crc=bad_crc, partial=partial)


def describe(scan: Scan, received: int) -> str:
    """Why no answer was found, from what the last scan saw and the bytes received."""
    if received == 0:
        return "nothing received"
    parts = [f"refused {r}" for r in scan.refused]
    if scan.bad_crc:
        parts.append(f"{scan.bad_crc} candidate frame(s) with bad CRC")
    if scan.partial:
        parts.append(f"an incomplete frame ({scan.partial} bytes)")
    if scan.skipped:
        parts.append(f"{scan.skipped} stray byte(s)")
    return f"{received} bytes received, no valid frame: " + ", ".join(parts or ["nothing usable"])
