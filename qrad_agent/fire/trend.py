"""A least-squares slope over a sliding time window, with its standard error: rates that know their noise.

Running sums make each update O(1); they are rebuilt around a new time origin every ``REBASE_EVERY``
samples so that days of seconds never cost precision.

The residual variance behind the standard error is at least ``resolution**2 / 12``, the variance of
rounding a reading to its sensor's resolution (uniform quantisation noise). Without that floor a window
of identical readings (a PMS5003 held at its 1000 µg/m³ full scale by cooking smoke, a steady MH-Z19) has
a slope of floating-point residue, +-1e-13, with a standard error of exactly 0: its sign then decided
whether the readings "fell" (hw-sim's fortnight at 2 s: the cooking PRE_ALARM cleared and came back).
"""

from __future__ import annotations

import math
from collections import deque

REBASE_EVERY = 512


class WindowSlope:
    """Samples (t, x) kept for ``window_s``; ``slope()`` returns (slope per s, standard error per s).
    ``resolution``: the reading's quantisation step in its own unit (0: none known)."""

    def __init__(self, window_s: float, resolution: float = 0.0) -> None:
        self.window_s = window_s
        self.min_variance = resolution * resolution / 12.0
        self.samples: deque[tuple[float, float]] = deque()
        self._origin = 0.0
        self._sums = [0.0] * 5  # t, x, tt, tx, xx (t from the origin)
        self._adds = 0

    def add(self, t_s: float, x: float) -> None:
        samples, s = self.samples, self._sums
        samples.append((t_s, x))
        t = t_s - self._origin  # _account inlined: the engine adds to six windows every 2 s
        s[0] += t
        s[1] += x
        s[2] += t * t
        s[3] += t * x
        s[4] += x * x
        while t_s - samples[0][0] > self.window_s:
            old = samples.popleft()
            self._account(old[0], old[1], -1.0)
        self._adds += 1
        if self._adds % REBASE_EVERY == 0:
            self._rebase()

    def _account(self, t_s: float, x: float, sign: float) -> None:
        t = t_s - self._origin
        s = self._sums
        s[0] += sign * t
        s[1] += sign * x
        s[2] += sign * t * t
        s[3] += sign * t * x
        s[4] += sign * x * x

    def _rebase(self) -> None:
        self._origin = self.samples[0][0] if self.samples else 0.0
        self._sums = [0.0] * 5
        for t, x in self.samples:
            self._account(t, x, 1.0)

    def clear(self) -> None:
        self.samples.clear()
        self._rebase()

    def slope(self) -> tuple[float, float]:
        """(slope, standard error); (0, inf) with fewer than 4 samples or no time span. The residual
        variance is at least the quantisation floor (module docstring)."""
        n = len(self.samples)
        if n < 4:
            return 0.0, math.inf
        st, sx, stt, stx, sxx = self._sums
        vtt = stt - st * st / n
        if vtt <= 1e-9:
            return 0.0, math.inf
        vtx = stx - st * sx / n
        vxx = sxx - sx * sx / n
        b = vtx / vtt
        variance = max(0.0, vxx - b * vtx) / (n - 2)
        return b, math.sqrt(max(variance, self.min_variance) / vtt)

    def median_last(self, k: int = 3) -> float | None:
        """Median of the last ``k`` values: one noisy or spiking sample cannot trip a level alone."""
        samples = self.samples
        if not samples:
            return None
        if k == 3 and len(samples) >= 3:
            a, b, c = samples[-1][1], samples[-2][1], samples[-3][1]
            return max(min(a, b), min(max(a, b), c))
        last = sorted([samples[-i][1] for i in range(1, min(k, len(samples)) + 1)])
        return last[len(last) // 2]
