"""Formatting of single values for the technicians' tables: a number with its unit at its resolution, a
missing value as "-" with its reason, durations and yes/no; never a Python repr (None, nan, True, dicts)."""

from __future__ import annotations

import math
from typing import Any

RESOLUTION_BY_UNIT = {
    "°C": 0.01, "%RH": 0.1, "hPa": 0.01, "lx": 1.0, "RPM": 1.0, "ppm": 1.0, "µg/m³": 1.0, "V": 0.1,
    "A": 0.001, "W": 0.1, "kWh": 0.001, "Hz": 0.01, "dB(A)": 0.1, "bool": 1.0, "K": 0.01, "s": 0.1,
}
"""Display resolution per unit: the finest step a technician needs (the sensors' own resolutions: SHT4x
0.01 °C, DS18B20 0.0625 °C, BME280 0.01 °C / 0.008 %RH / 0.0018 hPa, SDM120 0.01 V, 0.001 A, 0.1 W)."""


def number(value: Any, unit: str = "", resolution: float | None = None) -> str:
    """``value`` rounded to ``resolution`` (default: the unit's) with ``unit``; "-" when not a finite
    number. Negative zero prints as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    step = resolution if resolution is not None else RESOLUTION_BY_UNIT.get(unit, 0.01)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    text = f"{value:.{decimals}f}"
    if text.lstrip("-").strip("0.") == "":  # -0.0 -> 0.0
        text = text.lstrip("-")
    return f"{text} {unit}".rstrip() if unit not in ("bool",) else text


def missing(reason: str) -> str:
    """A missing value: "-" and why."""
    return f"- ({reason})" if reason else "-"


def duration(seconds: Any) -> str:
    """``seconds`` as "3 s", "4 min 10 s", "2 h 05 min", "3 d 04 h"; "-" when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def yes_no(value: Any) -> str:
    """A boolean as "yes"/"no"; anything else as `plain`."""
    return ("yes" if value else "no") if isinstance(value, bool) else plain(value)


def plain(value: Any) -> str:
    """Any JSON value as readable text: "-" for null/NaN, numbers without float noise, lists joined,
    objects as "key value" pairs."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value) or "-"
    return str(value)
