"""A DS18B20 on the 1-Wire bus as the kernel's w1_therm driver shows it: ``bus/w1/devices/28-*/w1_slave``.

Scratchpad (DS18B20 datasheet; w1_therm output format): bytes 0-1 the temperature as int16 little-endian in
1/16 °C (12-bit resolution), 2-3 TH/TL alarm registers (power-on 0x4B/0x46), 4 config 0x7F (12 bits),
5 0xFF, 6 0x10 - (byte0 & 0x0F) (what parts show in the reserved byte), 7 0x10, 8 the Dallas/Maxim
CRC-8 of bytes 0-7. Text: ``<9 bytes> : crc=<byte 8> YES`` then ``<9 bytes> t=<m°C>``, t truncated toward
zero as the kernel's integer division does (0x0173 -> 23187).

Faults (``set_fault``): "ok", "unplugged" (the device directory disappears), "garbage" (unparseable
text), "bad_checksum" (a corrupted byte 8: "crc=.. NO"), "stuck" (the file stops changing),
"out_of_range" (the 85.000 °C power-on scratchpad, or ``value_c`` such as -127), "spike" (one glitched
sample, +40 °C, shown from ``set_fault`` until the next ``update``, which clears it) and "drift"
(``drift_c`` more at each update). The true temperature stays in ``temp_c``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..sysfs_io import publish_text

W1_FAULTS = ("ok", "unplugged", "garbage", "bad_checksum", "stuck", "out_of_range", "spike", "drift")
POWER_ON_C = 85.0
SPIKE_C = 40.0
GARBAGE = "ff ff zz : crc=?? MAYBE\nnot a reading"


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8: poly x^8+x^5+x^4+1 (0x31) reflected (0x8C), init 0, LSB first."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def scratchpad(temp_c: float) -> bytes:
    """The 9 scratchpad bytes of a 12-bit DS18B20 showing ``temp_c`` (rounded to 1/16 °C)."""
    raw = max(-0x8000, min(0x7FFF, int(round(temp_c * 16.0))))
    lsb, msb = raw.to_bytes(2, "little", signed=True)
    head = bytes([lsb, msb, 0x4B, 0x46, 0x7F, 0xFF, 0x10 - (lsb & 0x0F), 0x10])
    return head + bytes([crc8_maxim(head)])


def w1_slave_text(pad: bytes, kernel_crc_ok: bool | None = None) -> str:
    """The two-line w1_slave text for scratchpad ``pad``; the verdict is computed unless given."""
    hexes = " ".join(f"{b:02x}" for b in pad)
    ok = crc8_maxim(pad) == 0 if kernel_crc_ok is None else kernel_crc_ok
    raw = int.from_bytes(pad[:2], "little", signed=True)
    t_mc = int(raw * 1000 / 16)  # truncation toward zero, as the kernel's integer division
    return f"{hexes} : crc={pad[8]:02x} {'YES' if ok else 'NO'}\n{hexes} t={t_mc}"


class Ds18b20Device:
    """One DS18B20; ``update(temp_c)`` sets the true temperature and publishes."""

    def __init__(self, root: Path, device_id: str = "28-0316a2791aff", temp_c: float = 21.0,
                 drift_c: float = 0.0625) -> None:
        self.dir = Path(root) / "bus" / "w1" / "devices" / device_id
        self.device_id = device_id
        self.temp_c = temp_c
        self.drift_c = drift_c
        self.drift_offset_c = 0.0
        self.fault = "ok"
        self.fault_value_c = POWER_ON_C
        self._shown: str | None = None
        self.publish()

    @property
    def path(self) -> Path:
        """The w1_slave file."""
        return self.dir / "w1_slave"

    def update(self, temp_c: float) -> None:
        """Set the true temperature, °C, and publish."""
        self.temp_c = temp_c
        if self.fault == "drift":
            self.drift_offset_c += self.drift_c
        elif self.fault == "spike":  # a glitch lasts one sample
            self.fault = "ok"
        self.publish()

    def set_fault(self, kind: str, value_c: float = POWER_ON_C) -> None:
        """Switch to fault ``kind`` (see W1_FAULTS); ``value_c`` is what "out_of_range" shows."""
        if kind not in W1_FAULTS:
            raise ValueError(f"DS18B20 fault must be one of {W1_FAULTS}, not {kind!r}")
        self.fault, self.fault_value_c, self.drift_offset_c = kind, value_c, 0.0
        if kind == "unplugged":
            shutil.rmtree(self.dir, ignore_errors=True)
            self._shown = None
        elif kind != "stuck":
            self.publish()

    def text(self) -> str:
        """The w1_slave text for the current true value and fault."""
        if self.fault == "garbage":
            return GARBAGE
        if self.fault == "out_of_range":
            return w1_slave_text(scratchpad(self.fault_value_c))
        offset = SPIKE_C if self.fault == "spike" else self.drift_offset_c
        pad = scratchpad(self.temp_c + offset)
        if self.fault == "bad_checksum":
            return w1_slave_text(pad[:8] + bytes([pad[8] ^ 0x5A]))
        return w1_slave_text(pad)

    def publish(self) -> None:
        """Write the w1_slave text (nothing while unplugged or stuck)."""
        if self.fault in ("unplugged", "stuck"):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        text = self.text()
        if text != self._shown:
            publish_text(self.path, text)
            self._shown = text
