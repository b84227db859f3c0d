"""Plausibility checks the hub applies on top of each driver's own range check.

- Rate of change: a jump faster than the quantity's believable rate between two successive samples is a
  spike, flagged FAULT (the value is kept in the reading for diagnostics, never used as OK).
- Redundancy: room temperatures measured by independent sensors (SHT4x, DS18B20, BME280) should agree.
  With three or more fresh ones, any further than the tolerance from their median is voted out; with two,
  a disagreement is reported (nobody can tell which one is right) and the preferred one is kept.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from qrad_drivers.base import Quality, Reading


def check_rate(previous: Reading | None, current: Reading, max_rate_per_s: float | None,
               floor: float = 0.0) -> Reading:
    """``current``, flagged FAULT if it moved more than ``max_rate_per_s * dt + floor`` since ``previous``.

    ``floor`` (in the channel's unit) absorbs the sensor's noise and resolution over short intervals.
    """
    if max_rate_per_s is None or previous is None or not current.ok:
        return current
    dt_s = current.t_s - previous.t_s
    if dt_s < 0 or previous.value != previous.value:  # out of order, or previous was NaN
        return current
    jump = abs(current.value - previous.value)
    allowed = max_rate_per_s * dt_s + floor
    if jump <= allowed:
        return current
    reason = (f"spike: {previous.value:g} -> {current.value:g} {current.unit} in {dt_s:.1f} s "
              f"(more than {allowed:.3g} allowed at {max_rate_per_s:g}/s)")
    return replace(current, quality=Quality.FAULT, reason=reason)


def vote(readings: list[Reading], tolerance: float) -> tuple[list[Reading], list[str]]:
    """Split fresh, OK redundant readings into those kept and the reasons of those voted out.

    With fewer than three readings nothing is voted out; a pair further apart than ``tolerance`` yields a
    "disagree" note and both are kept.
    """
    if len(readings) < 2:
        return readings, []
    if len(readings) == 2:
        a, b = readings
        if abs(a.value - b.value) > tolerance:
            return readings, [f"{a.channel} {a.value:.2f} and {b.channel} {b.value:.2f} disagree by "
                              f"{abs(a.value - b.value):.2f} > {tolerance:g}"]
        return readings, []
    median = statistics.median(r.value for r in readings)
    kept = [r for r in readings if abs(r.value - median) <= tolerance]
    notes = [f"{r.channel} {r.value:.2f} is {r.value - median:+.2f} from the median {median:.2f} of "
             f"{len(readings)} redundant sensors" for r in readings if r not in kept]
    return kept, notes
