"""Linux hwmon temperature and humidity inputs (sysfs).

Source: kernel Documentation/hwmon/sysfs-interface.rst: one ASCII integer per file; ``tempN_input`` in
millidegree Celsius, ``humidityN_input`` in milli-percent relative humidity; ``name`` holds the chip name
(``sht4x``, ``coretemp`` ...). A device is found by its chip name under ``<sysfs_root>/class/hwmon``.

sysfs attribute reads are served from kernel memory (or a short bus transfer for I2C chips) and are done
synchronously; a read that fails or a value that stops changing becomes the reading's quality, never an
exception.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from qrad_drivers.base import ChannelSpec, Quality, Reading, check_range, fault

SCALE = {"temp": 1e-3, "humidity": 1e-3, "fan": 1.0, "power": 1e-6, "in": 1e-3}
"""Raw hwmon unit to channel unit: m°C -> °C, m%RH -> %RH, RPM, µW -> W, mV -> V."""


def find_hwmon(sysfs_root: Path, chip: str, index: int = 0) -> Path | None:
    """The ``index``-th hwmon directory whose ``name`` is ``chip``, in hwmonN order, or None."""
    base = sysfs_root / "class" / "hwmon"
    found = []
    for entry in sorted(base.glob("hwmon*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            if (entry / "name").read_text().strip() == chip:
                found.append(entry)
        except OSError:
            continue
    return found[index] if index < len(found) else None


@dataclass
class HwmonInput:
    """One hwmon input file as a channel, e.g. ``temp1_input`` of chip ``sht4x`` -> room air °C.

    A value identical for ``stuck_after_s`` seconds is flagged STALE: a live sensor with 0.01 °C
    resolution always jitters, so a frozen value means a hung chip or driver. ``stuck_after_s = 0``
    disables the check (for inputs that legitimately hold still, e.g. fan RPM).
    """

    spec: ChannelSpec
    sysfs_root: Path
    chip: str
    attribute: str  # e.g. "temp1_input"
    chip_index: int = 0
    stuck_after_s: float = 600.0

    def __post_init__(self) -> None:
        match = re.fullmatch(r"([a-z]+)\d+_\w+", self.attribute)
        if match is None:
            raise ValueError(f"hwmon attribute {self.attribute!r} is not of the form <kind><N>_<item>")
        self._scale = SCALE.get(match.group(1), 1.0)
        self._path: Path | None = None
        self._last_raw: str | None = None
        self._changed_at_s = math.nan

    def _resolve(self) -> Path | None:
        if self._path is None or not self._path.exists():
            device = find_hwmon(self.sysfs_root, self.chip, self.chip_index)
            self._path = device / self.attribute if device else None
        return self._path

    def read(self, t_s: float) -> Reading:
        """Read the input now; ``t_s`` is the loop-clock time stamped on the reading."""
        path = self._resolve()
        if path is None:
            return fault(self.spec, t_s, f"no hwmon device named {self.chip!r} under {self.sysfs_root}")
        try:
            raw = path.read_text().strip()
            value = int(raw) * self._scale
        except (OSError, ValueError) as exc:
            self._path = None
            return fault(self.spec, t_s, f"{path}: {exc}")
        if raw != self._last_raw:
            self._last_raw, self._changed_at_s = raw, t_s
        reading = check_range(self.spec, value, t_s)
        stuck_for = t_s - self._changed_at_s
        if reading.ok and self.stuck_after_s > 0 and stuck_for >= self.stuck_after_s:
            reason = f"{path}: value {raw} unchanged for {stuck_for:.0f} s"
            return Reading(self.spec.name, value, self.spec.unit, t_s, Quality.STALE, reason)
        return reading
