"""The outdoor conditions the room model runs on: the platform's forecast, else a persistence estimate.

Times are the agent's calendar seconds (`calendar_s`: local wall-clock time as seconds since 1970-01-01
00:00 of the same naive calendar), so the simulated calendar and a heater's clock work alike.
The platform sends points (time, outdoor temperature °C, global horizontal irradiance W/m²); a new forecast
replaces the old one over its span and the past points are kept for two days as the record of what the
weather was. Within the span of known points (no gap over ``MAX_GAP_S``) a value is interpolated linearly
("forecast"). Beyond it the estimate is persistence: the value one day earlier (or two, ...) plus today's
trend, the difference between the last known value and the one a day before it ("persistence").
With nothing known at all, `at` returns None.
"""

from __future__ import annotations

import bisect
import math
from datetime import datetime

DAY_S = 86400.0
MAX_GAP_S = 3 * 3600.0
"""Two known points further apart than this are not interpolated between (s)."""
KEEP_PAST_S = 2 * DAY_S
MAX_POINTS = 2000
_EPOCH = datetime(1970, 1, 1)


def calendar_s(moment: datetime) -> float:
    """Seconds of the naive local calendar since 1970-01-01 00:00 (tzinfo, if any, is ignored)."""
    return (moment.replace(tzinfo=None) - _EPOCH).total_seconds()


class OutdoorForecast:
    """Known outdoor points and the estimate between and beyond them."""

    def __init__(self) -> None:
        self.times_s: list[float] = []
        self.temp_c: list[float] = []
        self.ghi_w_m2: list[float] = []
        self.received_at_s: float | None = None

    def update(self, points: list[tuple[float, float, float]], now_s: float) -> int:
        """Merge forecast points (calendar s, °C, W/m²) received at ``now_s``; returns how many were kept.

        Raises ValueError (nothing changed) for a non-finite value, a temperature outside -60..60 °C, an
        irradiance outside 0..1500 W/m² or more than MAX_POINTS points.
        """
        if len(points) > MAX_POINTS:
            raise ValueError(f"{len(points)} forecast points, at most {MAX_POINTS}")
        clean = sorted(points)
        for t_s, temp_c, ghi in clean:
            if not all(math.isfinite(v) for v in (t_s, temp_c, ghi)):
                raise ValueError("forecast values must be finite")
            if not -60.0 <= temp_c <= 60.0 or not 0.0 <= ghi <= 1500.0:
                raise ValueError(f"forecast point out of range: {temp_c} °C, {ghi} W/m²")
        if clean:
            first, last = clean[0][0], clean[-1][0]
            kept = [(t, c, g) for t, c, g in zip(self.times_s, self.temp_c, self.ghi_w_m2)
                    if (t < first or t > last) and t >= now_s - KEEP_PAST_S]
            merged = sorted(kept + clean)[-MAX_POINTS:]
            self.times_s = [p[0] for p in merged]
            self.temp_c = [p[1] for p in merged]
            self.ghi_w_m2 = [p[2] for p in merged]
        self.received_at_s = now_s
        return len(clean)

    def _interp(self, t_s: float) -> tuple[float, float] | None:
        i = bisect.bisect_left(self.times_s, t_s)
        if i < len(self.times_s) and self.times_s[i] == t_s:
            return self.temp_c[i], self.ghi_w_m2[i]
        if i == 0 or i == len(self.times_s):
            return None
        t0, t1 = self.times_s[i - 1], self.times_s[i]
        if t1 - t0 > MAX_GAP_S:
            return None
        w = (t_s - t0) / (t1 - t0)
        return (self.temp_c[i - 1] + w * (self.temp_c[i] - self.temp_c[i - 1]),
                self.ghi_w_m2[i - 1] + w * (self.ghi_w_m2[i] - self.ghi_w_m2[i - 1]))

    def at(self, t_s: float) -> tuple[float, float, str] | None:
        """(outdoor °C, irradiance W/m², "forecast" or "persistence") at calendar second ``t_s``, or None."""
        known = self._interp(t_s)
        if known is not None:
            return known[0], known[1], "forecast"
        if not self.times_s:
            return None
        last_t = self.times_s[-1]
        before = self._interp(last_t - DAY_S)
        trend_k = self.temp_c[-1] - before[0] if before is not None else 0.0
        for days in range(1, 8):
            past = self._interp(t_s - days * DAY_S)
            if past is not None:
                return past[0] + trend_k, past[1], "persistence"
        return self.temp_c[-1], 0.0, "persistence"
