"""Heat detection on the best room temperature: EN 54-5 class A1R, and "a rise our own power explains".

EN 54-5 class A1 (typical 25 °C, max application 50 °C, static response 54-65 °C: EN 54-5
as the class table distributors publish it). Response-time limits from 25 °C, as
EN 54-5:2000 Table 5 is commonly quoted (not checked against the standard's text, which is not public;
the test uses them as the acceptance windows): 1 K/min 29 min - 40 min 20 s;
3 K/min 7 min 13 s - 13 min 40 s; 5 K/min 4 min 9 s - 8 min 20 s; 10 K/min 1 - 4 min 20 s; 20 K/min
30 s - 2 min 20 s; 30 K/min 20 s - 1 min 40 s. The A1R element here alarms at ``ror_alarm_c`` 46 °C when
rising at ``ror_k_per_min`` >= 4 K/min and at ``static_alarm_c`` 56 °C otherwise (the class A1 algorithm
of a commercial panel's analog detectors: Panasonic EBL128 planning instructions, section 13.5); from 25 °C that answers
1 K/min at 31 min, 3 K/min at 10 min 20 s, 5 K/min at 4 min 12 s, 10 K/min at 2 min 6 s, 20 K/min at
63 s and 30 K/min at 42 s: inside every window (tests/fire/test_heat.py checks the table). The level is the
median of the last three samples and the rate a least-squares slope over ``slope_window_s``, so one noisy
sample cannot trip it.

A heater's sensor sits 0.3-0.6 m above the floor, in the cold lower layer, where a growing fire's heat
arrives late: in the UL FSRI armchair fire (benchmarks/fire.py) the thermocouples at that height pass
46 °C only 200-220 s after ignition, 15-30 s after they start rising at 10-30 K/min from 14 °C. A
rate-of-rise element answers that: the rate of UL 521 / NFPA 72 rate-of-rise heat detectors, 8.3 K/min
(15 °F/min), over ``fixed_rate_window_s`` and beyond what our own power explains, together with a rise of
``fixed_rate_rise_k`` 10 K above the lowest level (median of three) of the last ``fixed_rate_lookback_s``.
The rise is EN 54-5's own floor: its A1 lower response limits at 10, 20 and 30 K/min (60, 30 and 20 s
from 25 °C) are each a 10 K rise, so the element never answers before the standard allows; sensor noise
(0.1-0.5 K) and a 500 W heater's own plume (a few K over minutes) come nowhere near 10 K at 8.3 K/min.

Earlier, graded evidence comes from the part of the rise that the heater's own power does not explain.
An online first-order room model, ``T[k+1] - T[k] = a + b T[k] + c P[k]`` per ``model_step_s`` (the fast
pole of the 2R2C room: loss to a slowly varying ambient, capacity 1/c), is identified by recursive least
squares with forgetting from the heater's power and the room temperature. Updates stop while heat evidence is
present; a large residual is learned from only just after our own power changed (our step response),
never while the power is steady (that would be learning the fire). The explained rate is the model's
prediction now; only heating it explains is subtracted (an over-predicted cooling never adds
evidence). The unexplained rate counts only ``noise_sigmas`` standard errors above zero.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from qrad_agent.fire.config import HeatConfig
from qrad_agent.fire.evidence import Evidence, clip01, missing
from qrad_agent.fire.trend import WindowSlope

STATIC_PREWARN_K = 10.0
"""The graded level evidence starts this far below the alarm level (EBL128-style pre-warning)."""
STATIC_MAX_CONFIDENCE = 0.9
EXCITATION_W = 50.0
"""A change of our own power larger than this makes the next two model steps informative: a large
residual then is learned from (it is our own step response); otherwise only ordinary residuals are."""
MAX_RESIDUAL_K = 5.0
"""A residual this large per model step is not learned from (a glitch or a fire; heat evidence stops
learning earlier)."""


class RoomModel:
    """RLS on T[k+1] - T[k] = theta . [1, T[k], P[k]] with a prior from the configured room."""

    def __init__(self, cfg: HeatConfig) -> None:
        self.cfg = cfg
        step = cfg.model_step_s
        loss = cfg.prior_loss_w_k * step / cfg.prior_c_air_j_k
        self.theta = np.array([loss * 10.0, -loss, step / cfg.prior_c_air_j_k])
        self._p0 = np.diag([1e-1, 1e-4, 1e-6])
        self.p = self._p0.copy()
        self.sigma = 0.05  # K per step, running residual scale
        self.updates = 0
        self._acc_t = self._acc_p = 0.0
        self._acc_n = 0
        self._step_start: float | None = None
        self._prev: tuple[float, float] | None = None
        self._excited = False
        self.last_residual = 0.0

    def add(self, t_s: float, temp_c: float, power_w: float, learn: bool) -> None:
        if self._step_start is None:
            self._step_start = t_s
        self._acc_t += temp_c
        self._acc_p += power_w
        self._acc_n += 1
        if t_s - self._step_start < self.cfg.model_step_s:
            return
        mean = (self._acc_t / self._acc_n, self._acc_p / self._acc_n)
        self._acc_t = self._acc_p = 0.0
        self._acc_n, self._step_start = 0, t_s
        if self._prev is not None:
            excited = abs(mean[1] - self._prev[1]) > EXCITATION_W or self._excited
            self._excited = abs(mean[1] - self._prev[1]) > EXCITATION_W
            self._update(np.array([1.0, self._prev[0], self._prev[1]]), mean[0] - self._prev[0], learn, excited)
        self._prev = mean

    def _update(self, phi: np.ndarray, y: float, learn: bool, excited: bool) -> None:
        e = y - float(phi @ self.theta)
        self.last_residual = e
        ordinary = abs(e) <= 3.0 * self.sigma + 0.02
        if not learn or abs(e) > MAX_RESIDUAL_K or not (ordinary or excited):
            return
        lam = self.cfg.model_forgetting
        k = self.p @ phi / (lam + phi @ self.p @ phi)
        self.theta = self.theta + k * e
        self.p = np.minimum((self.p - np.outer(k, phi @ self.p)) / lam, self._p0 * 10)  # bounded: no wind-up
        self.sigma += 0.05 * (abs(e) - self.sigma)
        self.updates += 1

    def explained_k_per_min(self, temp_c: float, power_w: float) -> float:
        rate = float(self.theta @ np.array([1.0, temp_c, power_w]))
        return rate * 60.0 / self.cfg.model_step_s


class HeatDetector:
    """``update(t_s, temp_c, power_w)`` per sample; returns the heat evidence."""

    def __init__(self, cfg: HeatConfig) -> None:
        self.cfg = cfg
        self.trend = WindowSlope(cfg.slope_window_s)
        self.fast = WindowSlope(cfg.fixed_rate_window_s)
        self.levels: deque[tuple[float, float]] = deque()
        self.model = RoomModel(cfg)
        self.last: Evidence = missing("heat", 0.0, "no temperature yet")

    def update(self, t_s: float, temp_c: float | None, power_w: float | None) -> Evidence:
        if temp_c is None or not math.isfinite(temp_c):
            self.trend.clear()
            self.fast.clear()
            self.levels.clear()
            self.last = missing("heat", t_s, "no fresh room temperature")
            return self.last
        self.trend.add(t_s, temp_c)
        self.fast.add(t_s, temp_c)
        self._add_level(t_s)
        power = power_w if power_w is not None and math.isfinite(power_w) else 0.0
        self.model.add(t_s, temp_c, power, learn=self.last.confidence < 0.2)
        self.last = self._evaluate(t_s, temp_c, power)
        return self.last

    def _add_level(self, t_s: float) -> None:
        """The lowest (median of three) level of the last ``fixed_rate_lookback_s`` (the rise's reference):
        a sliding minimum (levels kept increasing, each added and dropped once: O(1) per sample)."""
        level = self.trend.median_last()
        if level is not None:
            while self.levels and self.levels[-1][1] >= level:
                self.levels.pop()
            self.levels.append((t_s, level))
        while self.levels and t_s - self.levels[0][0] > self.cfg.fixed_rate_lookback_s:
            self.levels.popleft()

    def _evaluate(self, t_s: float, temp_c: float, power_w: float) -> Evidence:
        c = self.cfg
        level = self.trend.median_last() or temp_c
        slope, se = self.trend.slope()
        rate, se_min = slope * 60.0, se * 60.0
        rising = rate >= c.ror_k_per_min and rate - c.noise_sigmas * se_min > 0
        alarm_c = c.ror_alarm_c if rising else c.static_alarm_c
        explained = max(0.0, self.model.explained_k_per_min(temp_c, power_w))
        unexplained = rate - explained - c.noise_sigmas * se_min if math.isfinite(se_min) else 0.0
        fast, fast_se = self.fast.slope()
        fast_rate = fast * 60.0 - explained
        rise = level - (self.levels[0][1] if self.levels else level)
        values = {"temp_c": round(level, 2), "rate_k_per_min": round(rate, 3),
                  "explained_k_per_min": round(explained, 3), "unexplained_k_per_min": round(unexplained, 3),
                  "alarm_level_c": alarm_c, "fast_rate_k_per_min": round(fast_rate, 2), "rise_k": round(rise, 2)}
        if level >= alarm_c:
            why = "rate-of-rise" if rising else "static"
            return Evidence("heat", 1.0, values, f"EN 54-5 A1R {why} response: {level:.1f} °C >= {alarm_c} °C"
                            f" at {rate:.1f} K/min", t_s)
        if (math.isfinite(fast_se) and fast_rate >= c.fixed_rate_k_per_min and fast - c.noise_sigmas * fast_se > 0
                and rise >= c.fixed_rate_rise_k):
            return Evidence("heat", 1.0, values, f"rate-of-rise response: {fast_rate:.1f} K/min >= "
                            f"{c.fixed_rate_k_per_min} K/min unexplained, {rise:.1f} K rise", t_s)
        span = c.rate_full_k_per_min - c.rate_floor_k_per_min
        c_rate = c.rate_max_confidence * clip01((unexplained - c.rate_floor_k_per_min) / span)
        c_level = STATIC_MAX_CONFIDENCE * clip01((level - (alarm_c - STATIC_PREWARN_K)) / STATIC_PREWARN_K)
        if c_rate <= 0 and c_level <= 0:
            return Evidence("heat", 0.0, values, "no unexplained heat", t_s)
        reason = (f"rise of {rate:.2f} K/min, {unexplained:.2f} K/min beyond what {power_w:.0f} W explains"
                  if c_rate >= c_level else f"{level:.1f} °C approaching {alarm_c} °C")
        return Evidence("heat", max(c_rate, c_level), values, reason, t_s)

    def status(self) -> dict:
        return {"model_theta": [float(x) for x in self.model.theta], "model_updates": self.model.updates,
                "model_sigma_k": round(self.model.sigma, 4), "last": self.last.as_dict()}
