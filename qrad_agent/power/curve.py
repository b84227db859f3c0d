"""A learned, monotone map between a power level in [0, 1] and the electrical power it draws (W).

The curve starts as a straight line between the configured idle and maximum power and learns from what is
measured (RAPL energy or a power meter) while a level is held: each sample moves the two knots around the
level towards the measurement by a learning rate, then the knots are made non-decreasing again. CPU power
grows faster than linearly near the top P-states (dynamic power ~ C·V²·f), which is what it learns.
"""

from __future__ import annotations

import bisect

import numpy as np


class PowerCurve:
    """Piecewise-linear level -> W over ``knots`` evenly spaced levels."""

    def __init__(self, idle_w: float, max_w: float, knots: int = 17, learning_rate: float = 0.3) -> None:
        if not (0 <= idle_w < max_w):
            raise ValueError(f"need 0 <= idle_w < max_w, got idle_w={idle_w} max_w={max_w}")
        self.levels = np.linspace(0.0, 1.0, knots)
        self.watts = idle_w + (max_w - idle_w) * self.levels
        self.learning_rate = learning_rate
        self.samples = 0

    def power_w(self, level: float) -> float:
        """Expected power (W) at ``level``."""
        return float(np.interp(level, self.levels, self.watts))

    def level_for(self, demand_w: float) -> float:
        """The level whose expected power is ``demand_w`` (clamped to the curve's range)."""
        watts = self.watts
        if demand_w <= watts[0]:
            return 0.0
        if demand_w >= watts[-1]:
            return 1.0
        i = bisect.bisect_left(watts.tolist(), demand_w)  # watts[i-1] < demand <= watts[i]
        w0, w1 = watts[i - 1], watts[i]
        frac = (demand_w - w0) / (w1 - w0) if w1 > w0 else 0.0
        return float(self.levels[i - 1] + frac * (self.levels[i] - self.levels[i - 1]))

    def learn(self, level: float, measured_w: float) -> None:
        """Move the curve toward ``measured_w`` at ``level`` and keep it non-decreasing."""
        pos = level * (len(self.levels) - 1)
        i = min(int(pos), len(self.levels) - 2)
        frac = pos - i
        error = measured_w - self.power_w(level)
        self.watts[i] += self.learning_rate * (1 - frac) * error
        self.watts[i + 1] += self.learning_rate * frac * error
        np.maximum.accumulate(self.watts, out=self.watts)
        self.samples += 1

    def state(self) -> dict[str, list[float] | int]:
        """Plain-JSON state for persistence."""
        return {"watts": [round(float(w), 3) for w in self.watts], "samples": self.samples}

    def restore(self, state: dict) -> None:
        """Load a state saved by `state` (ignored if its knot count differs)."""
        watts = state.get("watts", [])
        if len(watts) == len(self.watts) and all(np.isfinite(watts)):
            self.watts = np.maximum.accumulate(np.asarray(watts, dtype=float))
            self.samples = int(state.get("samples", 0))
