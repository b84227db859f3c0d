"""Spans of time visited in order: which of many spans may be in force now, without scanning them all.

A fortnight program holds every day's events (84 of them, plus a sound window each); a 2 s replay asks
600 000 times which are in force. ``Timeline.live(lo, hi)`` returns the indices of the spans that start
at or before ``hi`` and end after ``lo``, in their list order (so sums over them add up in the same
order as a scan of the whole list), in time proportional to the spans in force. The callers' exact
tests still apply to what it returns; it only never misses a span that meets [lo, hi].
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class Timeline:
    """Spans (start_s, end_s), end None or inf for open; ``live`` is called with non-decreasing ``lo``."""

    def __init__(self, spans: Sequence[tuple[float, float | None]]) -> None:
        self.starts = [float(s) for s, _ in spans]
        self.ends = [math.inf if e is None else float(e) for _, e in spans]
        self.order = sorted(range(len(spans)), key=self.starts.__getitem__)
        self._next = 0
        self._live: list[int] = []
        self._lo = -math.inf

    def live(self, lo: float, hi: float) -> list[int]:
        """Indices (ascending) of the spans with start <= ``hi`` and end > ``lo``; ``lo`` going back
        in time starts the visit over."""
        if lo < self._lo:
            self._next, self._live = 0, []
        self._lo = lo
        changed = False
        while self._next < len(self.order) and self.starts[self.order[self._next]] <= hi:
            self._live.append(self.order[self._next])
            self._next += 1
            changed = True
        if changed:
            self._live.sort()
        if any(self.ends[i] <= lo for i in self._live):
            self._live = [i for i in self._live if self.ends[i] > lo]
        return [i for i in self._live if self.starts[i] <= hi]
