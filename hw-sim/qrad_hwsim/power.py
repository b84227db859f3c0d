"""Electrical power of one CPU package against frequency and load, and the RAPL throttle.

    P_pkg(f, u) = P_idle + u * n_cores * c_eff * f * V(f)^2

Dynamic CMOS power is C·V²·f and the voltage rises with the frequency (thermal-and-control.md,
"CPU power against frequency"); V is taken linear in f from ``v_min_v`` at ``f_min_khz`` to
``v_max_v`` at ``f_max_khz``, so the curve grows roughly as f³ near the top. ``P_idle`` is the
package floor (uncore, leakage) that RAPL also counts. ``c_eff`` (effective switched capacitance per
core, F) is not given directly: it is derived so that one fully loaded package at ``f_max_khz`` draws
``p_dyn_max_w`` above its floor. The default numbers (5 W floor, 112.5 W dynamic, 0.75 V to 1.2 V)
are chosen, not measured: with 4 packages and 30 W of platform overhead they give the ~500 W of a
Q.rad-class heater at full power and 50 W idle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackagePowerModel:
    """Power model of one package (W, kHz, V)."""

    n_cores: int = 4
    f_min_khz: int = 800_000
    f_max_khz: int = 2_400_000
    p_idle_w: float = 5.0
    p_dyn_max_w: float = 112.5
    v_min_v: float = 0.75
    v_max_v: float = 1.2

    @property
    def c_eff_f(self) -> float:
        """Effective switched capacitance per core, farad (derived from ``p_dyn_max_w``)."""
        return self.p_dyn_max_w / (self.n_cores * self.f_max_khz * 1e3 * self.v_max_v**2)

    def voltage_v(self, f_khz: float) -> float:
        """Core voltage, V, linear in frequency between the two end points."""
        span = self.f_max_khz - self.f_min_khz
        frac = 0.0 if span <= 0 else (f_khz - self.f_min_khz) / span
        return self.v_min_v + (self.v_max_v - self.v_min_v) * frac

    def power_w(self, f_khz: float, util: float) -> float:
        """Package power, W, at frequency ``f_khz`` with the cores busy a fraction ``util`` (0..1)."""
        dynamic_w = self.n_cores * self.c_eff_f * f_khz * 1e3 * self.voltage_v(f_khz) ** 2
        return self.p_idle_w + max(0.0, min(1.0, util)) * dynamic_w

    def throttled_khz(self, f_req_khz: float, util: float, cap_w: float | None) -> float:
        """Frequency, kHz, the package runs at under a RAPL cap (None: no cap).

        The highest frequency <= ``f_req_khz`` whose power meets the cap, found by bisection on the
        monotonic power curve (continuous, as RAPL's duty and P-state mix averages out); never below
        ``f_min_khz``, where the power may then exceed the cap.
        """
        if cap_w is None or self.power_w(f_req_khz, util) <= cap_w:
            return f_req_khz
        if self.power_w(self.f_min_khz, util) >= cap_w:
            return float(self.f_min_khz)
        low, high = float(self.f_min_khz), float(f_req_khz)
        for _ in range(40):
            mid = 0.5 * (low + high)
            if self.power_w(mid, util) <= cap_w:
                low = mid
            else:
                high = mid
        return low
