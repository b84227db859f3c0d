"""The platform's weather forecast in `qrad-agent sim`: hw-sim's weather sent to the agent every hour.

Each hour the agent receives hourly points for the next 48 h (outdoor °C and irradiance W/m²), as the
platform's weather command would bring them. With ``error_k`` > 0 the temperatures carry a forecast error
that grows with the lead time: a random walk in hourly steps, drawn afresh for each forecast and scaled
so that its RMS at 24 h is ``error_k`` (K); irradiance is sent as it will be (its error is not modelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from qrad_agent.control.thermostat import Thermostat

HOUR_S = 3600.0
HORIZON_H = 48


def forecast_points(heater: Any, now: datetime, t_s: float, error_k: float,
                    rng: np.random.Generator) -> list[tuple[datetime, float, float]]:
    """Hourly (local time, °C, W/m²) from the next full hour for HORIZON_H hours, with the lead-time error."""
    first = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    lead0_s = (first - now).total_seconds()
    steps = rng.normal(0.0, error_k / math.sqrt(24.0), HORIZON_H) if error_k > 0 else np.zeros(HORIZON_H)
    error = np.cumsum(steps)
    points = []
    for h in range(HORIZON_H):
        t_year_s = heater.clock.t_year_s(t_s + lead0_s + h * HOUR_S)
        points.append((first + timedelta(hours=h), heater.weather.outdoor_c(t_year_s) + float(error[h]),
                       heater.weather.ghi_w_m2(t_year_s)))
    # the past hours, as observed: the model learns on what the weather was
    for h in range(1, 25):
        t_year_s = heater.clock.t_year_s(t_s + lead0_s - h * HOUR_S)
        if t_s + lead0_s - h * HOUR_S >= 0:
            points.append((first - timedelta(hours=h), heater.weather.outdoor_c(t_year_s),
                           heater.weather.ghi_w_m2(t_year_s)))
    return points


@dataclass(frozen=True)
class DrEvent:
    """A demand-response request the platform sends in a simulation: a shed to ``limit_w`` W from ``start``
    (local time) for ``hours``, sent ``notice_h`` hours before it starts."""

    start: datetime
    hours: float = 2.0
    limit_w: float = 50.0
    notice_h: float = 8.0


class Feeder:
    """Sends the forecast from the simulator's step hook (no task of its own: an extra task would change
    the order in which the agent and the simulator run at equal virtual times), and records the agent's
    heat-demand forecast each hour (``demand``). ``error_k`` None: no weather is sent."""

    def __init__(self, thermostat: Thermostat, heater: Any, start: datetime, error_k: float | None, seed: int,
                 period_s: float = HOUR_S) -> None:
        self.thermostat, self.heater, self.start = thermostat, heater, start
        self.error_k, self.period_s = error_k, period_s
        self.rng = np.random.default_rng(seed + 7919)
        self.next_s = 0.0
        self.demand: list[tuple[float, list[float]]] = []  # (sim s of the slot grid start, W per slot)
        self.dr: DrEvent | None = None
        self.dr_answer: dict[str, Any] | None = None  # expected discomfort, or the refusal

    def _send_dr(self, t_s: float) -> None:
        event = self.dr
        if event is None or self.dr_answer is not None:
            return
        now = self.start + timedelta(seconds=t_s)
        if now < event.start - timedelta(hours=event.notice_h):
            return
        from qrad_agent.control.demand_response import DrRequest

        request = DrRequest("sim-dr", event.start, event.start + timedelta(hours=event.hours), "shed",
                            event.limit_w)
        try:
            expected = self.thermostat.request_demand_response(request)
            self.dr_answer = {"accepted": True, "expected_discomfort_kh": expected.discomfort_kh,
                              "expected_lowest_c": expected.lowest_c}
        except ValueError as exc:
            self.dr_answer = {"accepted": False, "reason": str(exc)}

    def on_step(self, t_s: float) -> None:
        """At each ``period_s`` of simulated time, hand the agent's predictor a new forecast; send the
        demand-response request when it is due."""
        self._send_dr(t_s)
        predictor = self.thermostat.predictor
        if predictor is None or t_s < self.next_s:
            return
        self.next_s = (t_s // self.period_s + 1) * self.period_s
        now = self.start + timedelta(seconds=t_s)
        if self.error_k is not None:
            predictor.set_weather(forecast_points(self.heater, now, t_s, self.error_k, self.rng), now)
        thermostat = self.thermostat
        demand = predictor.forecast(now, thermostat.schedule)
        if demand is not None:
            grid_s = t_s - (t_s % predictor.s.slot_s)
            self.demand.append((grid_s, demand))
