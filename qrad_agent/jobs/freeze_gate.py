"""When to freeze and thaw the jobs: hysteresis on the commanded CPU share and a minimum dwell in each state.

A freeze stops the jobs' heat at once and keeps their work; thawing resumes it. Deciding that from one
threshold alone makes a demand that wanders around it freeze and thaw every control period (measured before
this gate: 50 ± 28 W around the threshold for 120 periods of 30 s gave 28 freezes and 27 thaws). Like a
compressor's anti-short-cycle timer (a minimum off and a minimum on time), the gate thaws only at or above
``thaw_above_share`` and only after the jobs have been frozen ``min_dwell_s``, and freezes on a low share
only after they have run ``min_thawed_s`` since the last thaw; until then a low share is applied as a CPU
quota (at most ``freeze_below_share`` of the CPUs: next to no heat). The safety minimum never waits: the
power manager's ``force_minimum`` freezes through ``decide(..., force=True)`` (`JobsHeat.apply_floor`), at
once, whatever the dwell. Holding the jobs frozen only delays heat, and holding them thawed on a low share
keeps them at that share's quota, so every state of the gate is on the safe side.

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
MIN_THAWED_S = 300.0
"""Least time (s) running after a thaw before a low share freezes the jobs again (the safety minimum does not
wait): the same anti-short-cycle order as MIN_DWELL_S."""


class FreezeGate:
    """``decide(share, t_s, frozen)`` -> whether the jobs should be frozen now (see the module docstring)."""

    def __init__(self, freeze_below_share: float = FREEZE_BELOW_SHARE, thaw_above_share: float = THAW_ABOVE_SHARE,
                 min_dwell_s: float = MIN_DWELL_S, min_thawed_s: float = MIN_THAWED_S) -> None:
        if not 0.0 < freeze_below_share <= thaw_above_share <= 1.0:
            raise ValueError(f"need 0 < freeze_below_share ({freeze_below_share}) <= thaw_above_share "
                             f"({thaw_above_share}) <= 1")
        for name, value in (("min_dwell_s", min_dwell_s), ("min_thawed_s", min_thawed_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.freeze_below_share = freeze_below_share
        self.thaw_above_share = thaw_above_share
        self.min_dwell_s = min_dwell_s
        self.min_thawed_s = min_thawed_s
        self._since_s: float | None = None  # loop time (s) of the last change of state
        self._frozen: bool | None = None
        self.freezes = 0
        self.thaws = 0

    def decide(self, share: float, t_s: float | None, frozen: bool, force: bool = False) -> bool:
        """Whether to be frozen, given the commanded ``share`` (0..1), the loop time ``t_s`` (s) and whether
        the jobs are ``frozen`` now (another path, e.g. the safety layer's ``freeze_all``, may change it).
        ``force``: the safety minimum: frozen now, whatever the dwell."""
        if frozen != self._frozen:  # changed behind the gate: that state's dwell starts now (none at first)
            self._frozen, self._since_s = frozen, (None if self._frozen is None else t_s)
        held_s = math.inf if t_s is None or self._since_s is None else t_s - self._since_s
        want = force or (share < self.freeze_below_share if not frozen else share < self.thaw_above_share)
        dwelt = held_s >= (self.min_dwell_s if frozen else self.min_thawed_s)
        if want != frozen and (force or dwelt):
            self._frozen, self._since_s = want, t_s
            if want:
                self.freezes += 1
            else:
                self.thaws += 1
        return bool(self._frozen)
