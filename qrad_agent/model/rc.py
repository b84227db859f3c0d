"""Grey-box RC room model identified online by recursive least squares with forgetting.

The room is seen from its air temperature T (°C) at the boundaries of fixed slots of ``dt_s`` seconds
(15 min by default), with inputs held over each slot: heater power P (W), outdoor temperature T_out (°C),
global horizontal irradiance S (W/m²) and occupants N. A two-node room (2R2C: air and envelope mass,
conductances air-mass, air-outdoor, mass-outdoor; heat into the air node) with inputs held over the slot is
exactly a second-order difference equation in T (Cayley-Hamilton on its 2x2 state matrix); written so that
the steady state stays physical (outdoor gain 1), the change of T over slot k is

    T[k+1] - T[k] = α (T[k] - T[k-1]) + β (T_out[k] - T[k]) + γ (T_out[k] - T_out[k-1])
                    + b1 P[k] + b2 P[k-1] + g1 S[k] + g2 S[k-1] + q N[k] + d

(P and S in kW and kW/m² for conditioning). The 1R1C room (one capacity C, one resistance R) is the case
α = γ = b2 = g2 = 0, with β = 1 - exp(-dt/RC) and b1 = β R. `RcModel(order=1)` fits that case only.
Physical read-out (`physical`): the loss coefficient H = β / (b1 + b2) (W/K, the steady-state heat per
kelvin above outdoors), the time constants -dt / ln z of the two roots z of z² - (1 + α - β) z + α,
and for order 1 the capacity C = τ H (J/K).

Identification: recursive least squares with exponential forgetting (factor ``forgetting`` per slot) and a
bounded covariance trace (no wind-up while the room sits at a constant setpoint and the data carry no
information). Fit measure: the root mean square, exponentially weighted over about a day, of the error of
a free-running prediction ``horizon_slots`` ahead (2 h) from the recorded inputs: the error that matters for
planning, not the one-step error that any model makes small.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

N_PARAMS = 9
PARAM_NAMES = ("alpha", "beta", "gamma", "b1", "b2", "g1", "g2", "q", "d")
ORDER1_FREE = (1, 3, 8)  # beta, b1, d (occupancy and sun are added when they vary; see _free)
FIT_WEIGHT = 1.0 / 96.0
"""Weight of each new slot in the fit measure's running mean square (about a day of 15-min slots)."""


@dataclass(frozen=True)
class Slot:
    """One slot's data: T at its start (°C) and its mean inputs (W, °C, W/m², people)."""

    air_c: float
    power_w: float
    outdoor_c: float
    ghi_w_m2: float = 0.0
    occupants: float = 0.0

    def finite(self) -> bool:
        """True when every field is a finite number."""
        return all(math.isfinite(v) for v in (self.air_c, self.power_w, self.outdoor_c, self.ghi_w_m2,
                                               self.occupants))


@dataclass(frozen=True)
class Physical:
    """Physical read-out of the fitted model: H (W/K), time constants (s, fast first), C (J/K, order 1)."""

    loss_w_k: float
    time_constants_s: tuple[float, ...]
    capacity_j_k: float | None


def _regressors(prev: Slot, cur: Slot) -> np.ndarray:
    return np.array([cur.air_c - prev.air_c, cur.outdoor_c - cur.air_c, cur.outdoor_c - prev.outdoor_c,
                     cur.power_w / 1000.0, prev.power_w / 1000.0, cur.ghi_w_m2 / 1000.0, prev.ghi_w_m2 / 1000.0,
                     cur.occupants, 1.0])


class RcModel:
    """The room model and its recursive identification; feed it one `Slot` per ``dt_s`` with `update`.

    order: 1 (1R1C) or 2 (2R2C); forgetting: RLS forgetting factor per slot in (0.9, 1]; horizon_slots:
    length of the free-run prediction of the fit measure. Raises ValueError on bad arguments.
    """

    def __init__(self, dt_s: float = 900.0, order: int = 2, forgetting: float = 0.998,
                 horizon_slots: int = 8, max_trace: float = 1e4) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if not (0.9 < forgetting <= 1.0) or not dt_s > 0 or horizon_slots < 1:
            raise ValueError("need dt_s > 0, 0.9 < forgetting <= 1 and horizon_slots >= 1")
        self.dt_s, self.order, self.forgetting = float(dt_s), order, forgetting
        self.horizon_slots, self.max_trace = horizon_slots, max_trace
        self.theta = np.zeros(N_PARAMS)
        self.cov = np.eye(N_PARAMS) * 100.0
        self.samples = 0
        self.fit_ms_k2 = math.nan  # running mean square of the horizon prediction error (K²)
        self.fit_samples = 0
        self.history: deque[Slot] = deque(maxlen=horizon_slots + 2)
        self._mask = self._free()

    def _free(self) -> np.ndarray:
        mask = np.ones(N_PARAMS, dtype=bool)
        if self.order == 1:
            mask[:] = False
            mask[[*ORDER1_FREE, 5, 7]] = True  # beta, b1, d, plus g1 (sun) and q (people) on the air
        return mask

    # -- identification ---------------------------------------------------------------------------------
    def update(self, slot: Slot) -> None:
        """Add the slot that just ended (T at its start, its mean inputs); non-finite slots break the
        history (the next two slots rebuild it) and are otherwise ignored."""
        if not slot.finite():
            self.history.clear()
            return
        if len(self.history) >= 2:
            self._rls(self.history[-2], self.history[-1], slot.air_c - self.history[-1].air_c)
        self.history.append(slot)
        self._score()

    def _rls(self, prev: Slot, cur: Slot, y: float) -> None:
        phi = np.where(self._mask, _regressors(prev, cur), 0.0)
        cov_phi = self.cov @ phi
        gain = cov_phi / (self.forgetting + phi @ cov_phi)
        self.theta = self.theta + gain * (y - phi @ self.theta)
        self.cov = (self.cov - np.outer(gain, cov_phi)) / self.forgetting
        self.cov = (self.cov + self.cov.T) / 2.0
        trace = float(np.trace(self.cov))
        if trace > self.max_trace:
            self.cov *= self.max_trace / trace
        self.samples += 1

    def _score(self) -> None:
        h = self.horizon_slots
        if len(self.history) < h + 2 or self.samples < 2 * N_PARAMS:
            return
        slots = list(self.history)
        start = len(slots) - h - 1  # predict slots[-1].air_c from slots[start-1], slots[start] and inputs
        predicted = self.simulate(slots[start - 1], slots[start], slots[start + 1:])
        error = slots[-1].air_c - predicted[-1]
        if not math.isfinite(error):
            return
        e2 = min(error * error, 100.0)
        self.fit_ms_k2 = e2 if self.fit_samples == 0 else (1 - FIT_WEIGHT) * self.fit_ms_k2 + FIT_WEIGHT * e2
        self.fit_samples += 1

    # -- use --------------------------------------------------------------------------------------------
    def step(self, prev: Slot, cur: Slot) -> float:
        """T (°C) at the end of slot ``cur`` given the slot before (``prev``)."""
        return cur.air_c + float(_regressors(prev, cur) @ self.theta)

    def simulate(self, prev: Slot, cur: Slot, future: list[Slot]) -> list[float]:
        """Free run: T at the end of ``cur`` and of each future slot but the last (whose air_c is ignored;
        the inputs of each are used). Returns len(future) temperatures (°C): the start of each future slot."""
        out = []
        for nxt in future:
            t_next = self.step(prev, cur)
            out.append(t_next)
            prev = cur
            cur = Slot(t_next, nxt.power_w, nxt.outdoor_c, nxt.ghi_w_m2, nxt.occupants)
        return out

    def power_for(self, prev: Slot, cur: Slot, target_c: float) -> float:
        """Power (W, unclipped) over slot ``cur`` that brings T to ``target_c`` at its end; nan if the model
        has no usable heater gain."""
        b1 = self.theta[3]
        if not b1 > 1e-6:
            return math.nan
        without = self.step(prev, Slot(cur.air_c, 0.0, cur.outdoor_c, cur.ghi_w_m2, cur.occupants))
        return (target_c - without) / b1 * 1000.0

    @property
    def fit_rms_k(self) -> float:
        """RMS (K) of the free-run prediction error ``horizon_slots`` ahead; nan before it is measured."""
        return math.sqrt(self.fit_ms_k2) if self.fit_samples else math.nan

    def physical(self) -> Physical | None:
        """H, time constants and (order 1) C of the fitted model; None when they are not physical
        (non-positive heater gain or loss, complex or unstable roots)."""
        alpha, beta, _, b1, b2 = self.theta[:5]
        gain = b1 + b2
        if not (beta > 0 and gain > 0):
            return None
        loss_w_k = beta / gain * 1000.0
        a1, a2 = 1 + alpha - beta, -alpha
        disc = a1 * a1 + 4 * a2
        if disc < 0:
            return None
        roots = sorted(((a1 - math.sqrt(disc)) / 2, (a1 + math.sqrt(disc)) / 2))
        roots = [z for z in roots if abs(z) > 1e-9]
        if not all(0 < z < 1 for z in roots):
            return None
        taus = tuple(-self.dt_s / math.log(z) for z in roots)
        capacity = taus[-1] * loss_w_k if self.order == 1 else None
        return Physical(loss_w_k, taus, capacity)

    def ready(self, max_fit_k: float, min_samples: int) -> tuple[bool, str]:
        """Whether the model is good enough to plan with, and why not."""
        if self.samples < min_samples:
            return False, f"learning: {self.samples}/{min_samples} slots"
        if not self.fit_rms_k <= max_fit_k:
            return False, f"fit {self.fit_rms_k:.2f} K above {max_fit_k} K"
        if self.physical() is None:
            return False, "fitted parameters not physical"
        return True, "ready"

    # -- persistence ------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain-JSON state (parameters, covariance, fit measure)."""
        return {"dt_s": self.dt_s, "order": self.order, "theta": self.theta.tolist(),
                "cov": self.cov.tolist(), "samples": self.samples, "fit_ms_k2": self.fit_ms_k2,
                "fit_samples": self.fit_samples}

    def restore(self, state: dict[str, Any]) -> None:
        """Load `state`; raises ValueError (nothing changed) when it does not fit this model."""
        if state.get("dt_s") != self.dt_s or state.get("order") != self.order:
            raise ValueError("saved model has another slot length or order")
        theta = np.asarray(state["theta"], dtype=float)
        cov = np.asarray(state["cov"], dtype=float)
        if theta.shape != (N_PARAMS,) or cov.shape != (N_PARAMS, N_PARAMS) or not (
                np.all(np.isfinite(theta)) and np.all(np.isfinite(cov))):
            raise ValueError("saved model parameters malformed")
        self.theta, self.cov = theta, cov
        self.samples, self.fit_samples = int(state["samples"]), int(state.get("fit_samples", 0))
        self.fit_ms_k2 = float(state.get("fit_ms_k2", math.nan))
        self.history.clear()  # the slots before a restart are not contiguous with the next ones
