"""Does the board do what the power manager wrote? The safety check that closes the actuation loop.

Two independent witnesses, each held against a bounded time (``power.follow_grace_s``):
- read-back: every interface's sysfs state against what the current level commands (`PowerManager.verify`):
  a cap the kernel silently ignores or someone else rewrites;
- measurement: the heater's measured power (RAPL, else the mains meter) above what the current level should
  draw (the learned curve) by more than ``power.follow_margin_w``: a CPU that ignores ``scaling_max_freq``
  with no RAPL to hold it, a load outside the jobs' cgroup.
Either latches ``power_not_following``, which holds power at the floor (the manager writes the floor; if the
board ignores that too, the condition tells the technician and the platform what no write can fix).
"""

from __future__ import annotations

from collections.abc import Callable

from qrad_agent.power.manager import PowerManager

CONDITION = "power_not_following"


class PowerFollowCheck:
    """A safety-layer check: ``check(now_s) -> {condition: reason}``. ``mains_w`` reads the mains meter (W,
    None without a valid reading), used where the board has no RAPL."""

    def __init__(self, manager: PowerManager, mains_w: Callable[[], float | None] | None,
                 margin_w: float, grace_s: float) -> None:
        self.manager = manager
        self.mains_w = mains_w
        self.margin_w = margin_w
        self.grace_s = grace_s
        self._over_since_s: float | None = None
        self._wrong_since_s: float | None = None

    def measured_w(self) -> float | None:
        """The heater's measured power now (W): RAPL-based where present, else the mains meter."""
        if self.manager.meter is not None and self.manager.measured_w is not None:
            return self.manager.measured_w
        return self.mains_w() if self.mains_w is not None else None

    def __call__(self, now_s: float) -> dict[str, str]:
        found: dict[str, str] = {}
        expected_w = self.manager.curve.power_w(self.manager.level)
        measured_w = self.measured_w()
        if measured_w is not None and measured_w > expected_w + self.margin_w:
            self._over_since_s = now_s if self._over_since_s is None else self._over_since_s
            if now_s - self._over_since_s >= self.grace_s:
                found[CONDITION] = (f"measured {measured_w:.0f} W for {now_s - self._over_since_s:.0f} s, "
                                    f"above the {expected_w:.0f} W the level {self.manager.level:.2f} should "
                                    f"draw (+{self.margin_w:.0f} W): the board ignores its caps")
        else:
            self._over_since_s = None
        wrong = {name: detail for name, (ok, detail) in self.manager.verify().items() if not ok}
        if wrong:
            self._wrong_since_s = now_s if self._wrong_since_s is None else self._wrong_since_s
            if now_s - self._wrong_since_s >= self.grace_s:
                found.setdefault(CONDITION, "read back other than written for "
                                 f"{now_s - self._wrong_since_s:.0f} s: "
                                 + "; ".join(f"{n}: {d}" for n, d in wrong.items()))
        else:
            self._wrong_since_s = None
        return found
