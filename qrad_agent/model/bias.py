"""A forecast's bias by time of day, learned from its own recent residuals.

The room model explains the heat demand from the weather, the schedule and the occupants it is told about;
what it does not know (cooking, a television, sun on a wall it models as on the window, the heater's idle
draw above its requested floor) comes back each day at about the same hours. `DailyBias` keeps, for each
of ``bins`` equal parts of the day, an exponentially weighted mean of actual - forecast (W) over the slots
whose outcome is known, and adds it to later forecasts of that part of the day.
"""

from __future__ import annotations

import math
from collections import OrderedDict

DAY_S = 86400.0


class DailyBias:
    """Residual mean (W) per part of the day; ``weight``: the share of each new residual (0..1)."""

    def __init__(self, bins: int = 24, weight: float = 0.25, pending_max: int = 200) -> None:
        if bins < 1 or not 0.0 < weight <= 1.0:
            raise ValueError(f"need bins >= 1 and 0 < weight <= 1, got {bins}, {weight}")
        self.bins, self.weight = bins, weight
        self.mean_w = [0.0] * bins
        self.count = [0] * bins
        self._pending: OrderedDict[float, float] = OrderedDict()  # slot start (calendar s) -> forecast W
        self._pending_max = pending_max

    def _bin(self, t_s: float) -> int:
        return int((t_s % DAY_S) / DAY_S * self.bins) % self.bins

    def issued(self, first_s: float, slot_s: float, demand_w: list[float], slots: int) -> None:
        """A forecast from calendar second ``first_s``: its first ``slots`` slots (W, before correction)
        wait for their outcome (a later forecast replaces an earlier one's value)."""
        for k, w in enumerate(demand_w[:slots]):
            self._pending[first_s + k * slot_s] = w
            self._pending.move_to_end(first_s + k * slot_s)
        while len(self._pending) > self._pending_max:
            self._pending.popitem(last=False)

    def actual(self, slot_start_s: float, power_w: float) -> None:
        """The mean power (W) a slot really drew: one residual for its part of the day."""
        forecast_w = self._pending.pop(slot_start_s, None)
        if forecast_w is None or not math.isfinite(power_w):
            return
        b = self._bin(slot_start_s)
        weight = max(self.weight, 1.0 / (self.count[b] + 1))
        self.mean_w[b] += weight * (power_w - forecast_w - self.mean_w[b])
        self.count[b] += 1

    def at(self, t_s: float) -> float:
        """The correction (W) for a slot starting at calendar second ``t_s``."""
        return self.mean_w[self._bin(t_s)]
