"""Open-window detection: heating pauses while a window is open.

Two sources, either suffices:
- a window contact channel (reading > 0.5: open); heating resumes as soon as it reads closed;
- a sudden drop: the room air falls by more than ``drop_k`` within ``drop_window_s`` beyond what the room
  model expects at the power applied (``expected_drop_k``, from the predictor when its model is ready, else
  0), the signature of a window opened in winter (thermostats with an open-window function look for about
  1 K in a few minutes). Heating resumes when the room has risen ``recover_k`` above the lowest point
  reached (the window was closed), or after ``max_pause_s``, whichever comes first.
While paused, the heater holds its minimum power unless the room is below the frost-protection setpoint.
Pure logic: the thermostat calls `update` every control step with the monotonic time (s).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowSettings:
    """See the module docstring; the defaults detect about 0.6 K in 5 min."""

    drop_k: float = 0.6
    drop_window_s: float = 300.0
    recover_k: float = 0.3
    max_pause_s: float = 1800.0


class WindowDetector:
    """Whether a window is open now (`open`), and why (`reason`)."""

    def __init__(self, settings: WindowSettings) -> None:
        self.s = settings
        self._history: deque[tuple[float, float]] = deque()
        self._drop_since_s: float | None = None
        self._lowest_c = math.inf
        self.open = False
        self.reason = "closed"
        self.events = 0

    def update(self, t_s: float, room_c: float, contact_open: bool | None, expected_drop_k: float = 0.0) -> bool:
        """One step: monotonic time (s), room air (°C, may be NaN), the contact (None: none configured or no
        reading), the model's expected fall (K) over drop_window_s at the power applied. Returns `open`."""
        if math.isfinite(room_c):
            self._history.append((t_s, room_c))
        while self._history and t_s - self._history[0][0] > self.s.drop_window_s:
            self._history.popleft()
        was_open = self.open
        if contact_open:
            self._history.clear()  # the fall while it was open must not read as a new drop once it closes
            self._drop_since_s = None
            self.open, self.reason = True, "window contact open"
        elif self._drop_since_s is not None:
            self._lowest_c = min(self._lowest_c, room_c) if math.isfinite(room_c) else self._lowest_c
            if t_s - self._drop_since_s >= self.s.max_pause_s:
                self._drop_since_s = None
            elif math.isfinite(room_c) and room_c >= self._lowest_c + self.s.recover_k:
                self._drop_since_s = None
            self.open = self._drop_since_s is not None
        else:
            self.open = False
            drop = self._drop_k()
            if drop is not None and drop - max(0.0, expected_drop_k) >= self.s.drop_k:
                self._drop_since_s, self._lowest_c = t_s, room_c
                self.open = True
                self.reason = f"room fell {drop:.1f} K in {self.s.drop_window_s / 60:g} min"
        if self.open and not was_open:
            self.events += 1
        if not self.open:
            self.reason = "closed"
        return self.open

    def forget(self) -> None:
        """Start the drop history afresh (the room channel changed: the step between two sensors is no
        fall). An open window stays open until it closes as usual."""
        self._history.clear()

    def _drop_k(self) -> float | None:
        if len(self._history) < 3:
            return None
        high = max(c for _, c in self._history)
        return high - self._history[-1][1]

    def status(self) -> dict:
        """Plain JSON: open, reason, events so far."""
        return {"open": self.open, "reason": self.reason, "events": self.events}
