"""Discrete two-degree-of-freedom PID on CPU power: pure, time-injected, with anti-windup and bumpless moves.

The law is the ISA ("ideal", "standard") form with set-point weighting (Åström and Hägglund, *Advanced PID
Control*, 2006, ch. 3):

    u = Kp * [ (b·r - y)  +  (1/Ti) ∫ (r - y) dt  -  Td · dy_f/dt ],   Td/N · dy_f/dt + y_f = y

- P acts on ``b·r - y`` (setpoint weight b, 0..1); I on the error ``r - y``; D on the measurement only,
  through a first-order filter of time constant Td/N, discretised by backward difference (stable for any dt).
  A setpoint step therefore never kicks the derivative, and kicks P by Kp·b·Δr only.
- Computed as ``u = Kp·b·(r - y) + J - Kp·Td·dy_f/dt`` where the state ``J = Kp·(1 - b)·(-y) + I`` (the
  integral plus the part of P that acts on the measurement alone) moves each step by
  ``Kp/Ti·(r - y)·dt - Kp·(1 - b)·Δy``. J does not depend on the setpoint, so a setpoint change of any size
  moves nothing but ``Kp·b·Δr`` (0 with b = 0: bumpless) and the integral never jumps into its clamp (the
  earlier design moved the integral by -Kp·b·Δr at the change; its clamp cut that short and +0.3 K jumped to
  full power). With b = 0 the setpoint response is exactly the one of b = 1 behind the reference filter
  1/(Ti·s + 1) (the filter cancels the PI zero, the reason a PI step overshoots: Skogestad, "Simple analytic
  rules for model reduction and PID controller tuning", J. Process Control 13, 2003), without the filter's
  lag in saturation: a room far below a new setpoint gets full power within a few periods, because the
  integral acts on the whole error at once (Kp/Ti W/s per K: 1.3 W/s per K with the defaults).
- Optional reference trajectory (``setpoint_filter_s`` / ``setpoint_ramp_k_per_s``, off by default): r is
  replaced by r_p, approaching r through a first-order filter and a rate limit.
- I is integrated by backward Euler with the error at the end of the interval (as simple-pid does, so the two
  agree exactly when unsaturated with Td = 0, b = 1 and no reference trajectory).
- Anti-windup: J is kept inside [output_min_w, output_max_w] (conditional integration: with b = 0, J is the
  output before D, so it never winds beyond the range), and back-calculation (Åström and Hägglund,
  section 3.5) pulls it toward the output actually applied over the interval that just ended, with a
  tracking time Tt, discretised exactly (factor 1 - exp(-dt/Tt), never overshooting). The applied output is
  our own clamped output, or the ``applied_w`` the caller reports when something else decided the power
  (safety forced 0 W, a power cap).
- Bumpless gain changes: J is re-computed so the output at the last point is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


def _require_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")


RAMP_SPEEDUP = 4.0
"""With a reference filter and no rate given, the rate limit lets P move the whole output range in a quarter of
the filter time constant."""


@dataclass(frozen=True)
class PidGains:
    """Gains of the ISA-form PID, in the units of a thermostat on power.

    kp_w_per_k: proportional gain Kp (W/K), > 0 (heating: more power when colder).
    ti_s: integral time Ti (s), > 0; ``math.inf`` disables integral action.
    td_s: derivative time Td (s), >= 0; 0 disables derivative action.
    derivative_filter_n: N, the derivative filter time constant is Td/N (typically 2..20; default 8).
    setpoint_weight_b: proportional setpoint weight b (0..1): a setpoint step moves the output by Kp·b·Δr at
        once, the rest through the integral; 0 makes every setpoint change bumpless.
    tracking_time_s: anti-windup back-calculation time Tt (s); None -> sqrt(Ti·Td), or Ti/2 when Td = 0
        (Åström and Hägglund 2006, section 3.5).
    setpoint_filter_s: time constant Tf (s) of an optional reference trajectory r_p toward a new setpoint;
        None: none (the setpoint acts at once, shaped by b).
    setpoint_ramp_k_per_s: largest rate (K/s) of r_p; None -> RAMP_SPEEDUP (4) x (max - min) / (Kp·Tf)
        with a filter, no trajectory without one.
    """

    kp_w_per_k: float
    ti_s: float = math.inf
    td_s: float = 0.0
    derivative_filter_n: float = 8.0
    setpoint_weight_b: float = 1.0
    tracking_time_s: float | None = None
    setpoint_ramp_k_per_s: float | None = None
    setpoint_filter_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.kp_w_per_k) and self.kp_w_per_k > 0):
            raise ValueError(f"kp_w_per_k must be finite and > 0, got {self.kp_w_per_k!r}")
        if not (self.ti_s > 0):  # also refuses NaN; inf allowed
            raise ValueError(f"ti_s must be > 0 (math.inf disables I), got {self.ti_s!r}")
        if not (math.isfinite(self.td_s) and self.td_s >= 0):
            raise ValueError(f"td_s must be finite and >= 0, got {self.td_s!r}")
        if not (math.isfinite(self.derivative_filter_n) and self.derivative_filter_n > 0):
            raise ValueError(f"derivative_filter_n must be finite and > 0, got {self.derivative_filter_n!r}")
        if not (0.0 <= self.setpoint_weight_b <= 1.0):
            raise ValueError(f"setpoint_weight_b must be within 0..1, got {self.setpoint_weight_b!r}")
        if self.tracking_time_s is not None and not (self.tracking_time_s > 0):
            raise ValueError(f"tracking_time_s must be > 0 or None, got {self.tracking_time_s!r}")
        if self.setpoint_filter_s is not None and not (math.isfinite(self.setpoint_filter_s)
                                                       and self.setpoint_filter_s > 0):
            raise ValueError(f"setpoint_filter_s must be finite and > 0 or None, got {self.setpoint_filter_s!r}")
        if self.setpoint_ramp_k_per_s is not None and not (self.setpoint_ramp_k_per_s > 0):
            raise ValueError(f"setpoint_ramp_k_per_s must be > 0 or None, got {self.setpoint_ramp_k_per_s!r}")

    @property
    def effective_tracking_time_s(self) -> float:
        """The back-calculation time Tt actually used (s); inf when there is no integral action."""
        if self.tracking_time_s is not None:
            return self.tracking_time_s
        if self.td_s > 0 and math.isfinite(self.ti_s):
            return math.sqrt(self.ti_s * self.td_s)
        return self.ti_s / 2


@dataclass(frozen=True)
class PidTerms:
    """The last update's terms (W), for diagnostics: output_w = clamp(p_w + i_w + d_w)."""

    p_w: float
    i_w: float
    d_w: float
    output_w: float


class PidController:
    """ISA-form 2-DOF PID with back-calculation anti-windup; see the module docstring for the law.

    output_min_w, output_max_w: output range (W), finite, min < max.
    bumpless_setpoint: if True (default), the reference trajectory the gains configure (if any) is followed;
        False: the setpoint acts at once whatever the gains say (the classical step, shaped by b only).
    """

    def __init__(
        self, gains: PidGains, output_min_w: float, output_max_w: float, *, bumpless_setpoint: bool = True
    ) -> None:
        _require_finite(output_min_w=output_min_w, output_max_w=output_max_w)
        if not output_min_w < output_max_w:
            raise ValueError(f"output_min_w ({output_min_w}) must be < output_max_w ({output_max_w})")
        self._gains = gains
        self._min_w = float(output_min_w)
        self._max_w = float(output_max_w)
        self.bumpless_setpoint = bumpless_setpoint
        self.reset()

    @property
    def gains(self) -> PidGains:
        return self._gains

    @property
    def terms(self) -> PidTerms:
        """Last P, I, D and output (W)."""
        return self._terms

    @property
    def output_w(self) -> float:
        """Last output (W)."""
        return self._terms.output_w

    def _clamp(self, value_w: float) -> float:
        return min(self._max_w, max(self._min_w, value_w))

    def reset(self, output_w: float | None = None, pv_c: float | None = None) -> None:
        """Forget the history. With output_w, the next update returns that output (clamped to the range)
        whatever the error (manual -> auto transfer); with pv_c, the derivative and the measurement's part
        of J start from that measurement and a reference trajectory (if configured) starts there.
        """
        if output_w is not None:
            _require_finite(output_w=output_w)
        if pv_c is not None:
            _require_finite(pv_c=pv_c)
        self._integral_w = self._clamp(0.0)
        self._dpv_k_per_s = 0.0  # filtered derivative of the measurement
        self._last_pv_c = pv_c
        self._last_sp_c: float | None = None
        # the reference trajectory r_p (module docstring); a restart at pv_c starts it there, so P starts at 0
        self._p_sp_c: float | None = pv_c if self.bumpless_setpoint else None
        self._v_prev_w: float | None = None  # last unclamped output
        self._pending_output_w = output_w
        start_w = self._clamp(output_w if output_w is not None else self._integral_w)
        self._terms = PidTerms(0.0, self._integral_w, 0.0, start_w)

    def set_gains(self, gains: PidGains) -> None:
        """Change the gains without moving the output at the last point (J re-computed, clamped)."""
        self._gains = gains
        if self._v_prev_w is None or self._last_sp_c is None or self._last_pv_c is None:
            return
        p_sp_c = self._last_sp_c if self._p_sp_c is None else self._p_sp_c
        p_w, d_w = self._p_w(p_sp_c, self._last_pv_c), self._d_w()
        self._integral_w = self._clamp(self._terms.output_w - p_w - d_w)
        self._set_output(p_w, d_w)

    @property
    def filter_s(self) -> float:
        """Time constant Tf (s) of the reference trajectory (see PidGains); inf: none (a step acts at once)."""
        g = self._gains
        return g.setpoint_filter_s if g.setpoint_filter_s is not None else math.inf

    @property
    def ramp_k_per_s(self) -> float:
        """Largest rate (K/s) of the reference trajectory (see PidGains); inf: no limit."""
        g = self._gains
        if g.setpoint_ramp_k_per_s is not None:
            return g.setpoint_ramp_k_per_s
        if not math.isfinite(self.filter_s):
            return math.inf
        return RAMP_SPEEDUP * (self._max_w - self._min_w) / (g.kp_w_per_k * self.filter_s)

    def _ramp(self, setpoint_c: float, pv_c: float, dt_s: float) -> float:
        """The reference trajectory r_p for this step: filtered toward ``setpoint_c`` (`filter_s`) and
        rate-limited (`ramp_k_per_s`); never past the setpoint."""
        if not self.bumpless_setpoint or self._p_sp_c is None:
            return setpoint_c
        gap_k = setpoint_c - self._p_sp_c
        filtered_k = abs(gap_k) * -math.expm1(-dt_s / self.filter_s) if math.isfinite(self.filter_s) else abs(gap_k)
        step_k = min(filtered_k, self.ramp_k_per_s * dt_s)
        return self._p_sp_c + math.copysign(step_k, gap_k)

    def _p_w(self, setpoint_c: float, pv_c: float) -> float:
        """The part of P on the error (Kp·b·(r - y)); the rest of P, -Kp·(1 - b)·y, lives in J."""
        return self._gains.kp_w_per_k * self._gains.setpoint_weight_b * (setpoint_c - pv_c)

    def _d_w(self) -> float:
        return -self._gains.kp_w_per_k * self._gains.td_s * self._dpv_k_per_s

    def _set_output(self, p_w: float, d_w: float) -> float:
        self._v_prev_w = p_w + self._integral_w + d_w
        self._terms = PidTerms(p_w, self._integral_w, d_w, self._clamp(self._v_prev_w))
        return self._terms.output_w

    def update(
        self,
        setpoint_c: float,
        pv_c: float,
        dt_s: float,
        applied_w: float | None = None,
        *,
        integrate: bool = True,
    ) -> float:
        """One control step; returns the output (W) for the next interval, within the output range.

        setpoint_c, pv_c: setpoint and measurement (°C). dt_s: time since the last update (s), > 0.
        applied_w: the power (W) actually applied over the interval that just ended, when something other
            than this controller decided it; the integral tracks it, so control resumes without a bump.
        integrate: False freezes the integral (stale sensor, heater switched off); P and D still act.
        applied_w and integrate act on J only; its measurement part (-Kp·(1 - b)·Δy) always moves.
        Raises ValueError on dt_s <= 0 or any non-finite input.
        """
        _require_finite(setpoint_c=setpoint_c, pv_c=pv_c, dt_s=dt_s)
        if applied_w is not None:
            _require_finite(applied_w=applied_w)
        if dt_s <= 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s!r}")
        g = self._gains
        if self._last_pv_c is not None:
            tf_s = g.td_s / g.derivative_filter_n
            self._dpv_k_per_s = (tf_s * self._dpv_k_per_s + (pv_c - self._last_pv_c)) / (tf_s + dt_s)
        p_sp_c = self._ramp(setpoint_c, pv_c, dt_s)
        p_w, d_w = self._p_w(p_sp_c, pv_c), self._d_w()
        if self._pending_output_w is None and self._last_pv_c is None and self._last_sp_c is None:
            # A cold start (no history, nothing restored): the measurement's part of P, -Kp·(1 - b)·y, is
            # counted from the setpoint, as if the room had been held there; a room 2 K below a new heater's
            # setpoint gets the whole error at once. Setpoint changes after it move only through J.
            self._integral_w += g.kp_w_per_k * (1.0 - g.setpoint_weight_b) * (p_sp_c - pv_c)
        if self._pending_output_w is not None:
            self._integral_w = self._pending_output_w - p_w - d_w
            self._pending_output_w = None
        else:
            if self._last_pv_c is not None and g.setpoint_weight_b < 1.0:  # P on the measurement alone
                self._integral_w -= g.kp_w_per_k * (1.0 - g.setpoint_weight_b) * (pv_c - self._last_pv_c)
            if integrate:
                self._integral_w += g.kp_w_per_k / g.ti_s * (p_sp_c - pv_c) * dt_s
                if self._v_prev_w is not None:
                    applied = self._terms.output_w if applied_w is None else applied_w
                    alpha = -math.expm1(-dt_s / g.effective_tracking_time_s)
                    self._integral_w += alpha * (applied - self._v_prev_w)
        self._integral_w = self._clamp(self._integral_w)
        self._last_sp_c, self._last_pv_c, self._p_sp_c = setpoint_c, pv_c, p_sp_c
        return self._set_output(p_w, d_w)

    def state(self) -> dict[str, float]:
        """Persistable state, plain floats: integral_w always; setpoint_c and output_w once updated;
        p_setpoint_c while the proportional setpoint is still ramping toward setpoint_c."""
        out = {"integral_w": self._integral_w}
        if self._last_sp_c is not None:
            out["setpoint_c"] = self._last_sp_c
        if self._p_sp_c is not None and self._p_sp_c != self._last_sp_c:
            out["p_setpoint_c"] = self._p_sp_c
        if self._v_prev_w is not None:
            out["output_w"] = self._terms.output_w
        return out

    def restore(self, state: dict[str, float]) -> None:
        """Resume from ``state()`` (e.g. after a restart). Refuses unknown keys, a missing integral_w and
        non-finite values (ValueError). The derivative restarts from the next measurement.
        """
        unknown = set(state) - {"integral_w", "setpoint_c", "output_w", "p_setpoint_c"}
        if unknown:
            raise ValueError(f"unknown PID state keys: {sorted(unknown)}")
        if "integral_w" not in state:
            raise ValueError("PID state lacks integral_w")
        for key, value in state.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"PID state {key} must be a number, got {value!r}")
        values = {key: float(value) for key, value in state.items()}
        _require_finite(**values)
        self.reset()
        self._integral_w = self._clamp(values["integral_w"])
        self._last_sp_c = values.get("setpoint_c")
        self._p_sp_c = values.get("p_setpoint_c", self._last_sp_c)
        if "output_w" in values:
            self._v_prev_w = self._clamp(values["output_w"])
            self._terms = replace(self._terms, i_w=self._integral_w, output_w=self._v_prev_w)
        else:
            self._terms = replace(self._terms, i_w=self._integral_w, output_w=self._integral_w)
