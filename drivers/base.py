"""The driver model: channel declarations, readings and their quality.

A driver reads one hardware family (hwmon, 1-Wire, a UART sensor ...) and turns raw values into
`Reading`s in SI-ish units (°C, %RH, ppm, W). A failure never raises out of `read()`: it becomes a
reading whose quality says what went wrong, so the thermostat and safety layer can act on it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Quality(enum.Enum):
    """How far a reading can be trusted."""

    OK = "ok"
    STALE = "stale"  # the value stopped changing or arrived too long ago
    OUT_OF_RANGE = "out_of_range"  # outside the channel's valid range
    FAULT = "fault"  # the read failed (file missing, I/O error, garbled data)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Declaration of one channel: what it measures and what values are plausible.

    ``valid_min``/``valid_max`` bound a plausible value in ``unit``; ``period_s`` is the nominal poll period.
    """

    name: str
    quantity: str
    unit: str
    valid_min: float
    valid_max: float
    period_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of a channel: value in the channel's unit, loop-clock time in s, quality and reason."""

    channel: str
    value: float
    unit: str
    t_s: float
    quality: Quality = Quality.OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the value can be used for control."""
        return self.quality is Quality.OK and math.isfinite(self.value)


def check_range(spec: ChannelSpec, value: float, t_s: float) -> Reading:
    """Build a reading for ``value``, flagged OUT_OF_RANGE when outside ``spec``'s valid range."""
    if not (spec.valid_min <= value <= spec.valid_max):
        reason = f"{value:g} {spec.unit} outside [{spec.valid_min:g}, {spec.valid_max:g}]"
        return Reading(spec.name, value, spec.unit, t_s, Quality.OUT_OF_RANGE, reason)
    return Reading(spec.name, value, spec.unit, t_s)


def fault(spec: ChannelSpec, t_s: float, reason: str) -> Reading:
    """A reading that carries no value, only why the read failed."""
    return Reading(spec.name, math.nan, spec.unit, t_s, Quality.FAULT, reason)
