"""The agent's clock: every duration comes from the event loop's clock, the calendar from a mapping.

``monotonic()`` is ``loop.time()`` (s), so hw-sim's virtual-time loop runs days in seconds and a rig runs in
real time with the same code. ``now()`` gives the local calendar time the weekly schedule needs: the wall
clock on a heater, or the simulated calendar (start + elapsed loop time) in a simulation.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta


class Clock:
    """Loop-clock time plus a calendar. ``calendar_start`` pins the calendar for simulations."""

    def __init__(self, calendar_start: datetime | None = None, loop_start_s: float | None = None) -> None:
        self._calendar_start = calendar_start
        self._loop_start_s = loop_start_s

    def monotonic(self) -> float:
        """Seconds on the running loop's clock."""
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        """Local calendar time: the wall clock, or the simulated calendar when one was given."""
        if self._calendar_start is None:
            return datetime.now()
        t_s = self.monotonic()
        if self._loop_start_s is None:
            self._loop_start_s = t_s
        return self._calendar_start + timedelta(seconds=t_s - self._loop_start_s)
