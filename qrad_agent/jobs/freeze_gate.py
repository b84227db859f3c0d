"""When to freeze and thaw the jobs: hysteresis on the commanded CPU share and a minimum frozen dwell.

A freeze stops the jobs' heat at once and keeps their work; thawing resumes it. Deciding that from one
threshold alone makes a demand that wanders around it freeze and thaw every control period (measured before
this gate: 50 ± 28 W around the threshold for 120 periods of 30 s gave 28 freezes and 27 thaws). Like a
compressor's anti-short-cycle timer, the gate thaws only at or above ``thaw_above_share`` and only after the
jobs have been frozen ``min_dwell_s``. Freezing is never delayed: a share below ``freeze_below_share``
freezes at once, because the same call carries the safety layer's minimum (the power manager's
``force_minimum`` writes share 0 like a low demand does) and the minimum must be a freeze that waits on
nothing. Holding the jobs frozen only delays heat, so every state of the gate is on the safe side.

Pure and time-injected: the caller passes the loop time; None (no clock) counts as a dwell already served.
"""

from __future__ import annotations

import math

FREEZE_BELOW_SHARE = 0.01
"""A commanded share under this may freeze the jobs instead of starving them on a 1 ms quota."""
THAW_ABOVE_SHARE = 0.05
"""Frozen jobs thaw only at or above this share (five times the freeze share: a band several control steps
of a wandering demand wide)."""
MIN_DWELL_S = 300.0
"""Least time (s) frozen before a thaw, ten 30 s control periods: the order of anti-short-cycle delays of
heat pumps and compressors (3 to 5 min), and short next to the room's time constant (about 20 min)."""


class FreezeGate:
    """``decide(share, t_s, frozen)`` -> whether the jobs should be frozen now (see the module docstring)."""

    def __init__(self, freeze_below_share: float = FREEZE_BELOW_SHARE, thaw_above_share: float = THAW_ABOVE_SHARE,
                 min_dwell_s: float = MIN_DWELL_S) -> None:
        if not 0.0 < freeze_below_share <= thaw_above_share <= 1.0:
            raise ValueError(f"need 0 < freeze_below_share ({freeze_below_share}) <= thaw_above_share "
                             f"({thaw_above_share}) <= 1")
        if not (math.isfinite(min_dwell_s) and min_dwell_s >= 0):
            raise ValueError(f"min_dwell_s must be finite and >= 0, got {min_dwell_s!r}")
        self.freeze_below_share = freeze_below_share
        self.thaw_above_share = thaw_above_share
        self.min_dwell_s = min_dwell_s
        self._since_s: float | None = None  # loop time (s) of the last change of state
        self._frozen: bool | None = None
        self.freezes = 0
        self.thaws = 0

    def decide(self, share: float, t_s: float | None, frozen: bool) -> bool:
        """Whether to be frozen, given the commanded ``share`` (0..1), the loop time ``t_s`` (s) and whether
        the jobs are ``frozen`` now (another path, e.g. the safety layer's ``freeze_all``, may change it)."""
        if frozen != self._frozen:  # changed behind the gate: that state's dwell starts now (none at first)
            self._frozen, self._since_s = frozen, (None if self._frozen is None else t_s)
        dwelt = t_s is None or self._since_s is None or t_s - self._since_s >= self.min_dwell_s
        want = share < self.freeze_below_share if not frozen else share < self.thaw_above_share
        if want != frozen and (want or dwelt):  # a freeze never waits; a thaw waits for the dwell
            self._frozen, self._since_s = want, t_s
            if want:
                self.freezes += 1
            else:
                self.thaws += 1
        return bool(self._frozen)
