"""Demand response: the platform asks a heater to shift its load for the grid, within comfort bounds.

A request is "from ``start`` to ``end`` keep power at most ``limit_w``" (``shed``) or "absorb at least
``limit_w``" (``absorb``, a boost: surplus power on the grid). For a shed the heater pre-heats: during the
``preheat_s`` before the window its target is raised by ``band_k`` (at full power until the room is there),
so the room's mass carries it through the window; during the window the limit holds unless the room falls
to frost protection (the floor: never below it); afterwards the thermostat recovers as usual. An absorb
raises power to ``limit_w`` while the room is below the setpoint plus ``band_k``.

Before accepting, `expect` runs the room model (the predictor's, `qrad_agent/control/predict.py`) over the
request: the discomfort it expects (K·h below the comfort band, during the window and ``AFTER_S`` after it)
and the lowest room temperature; a shed whose model room falls below frost protection is refused. Without a
ready model nothing is promised (expected None) and the request is accepted: the frost floor still holds.
When a window and its recovery are over, `outcomes` gets what happened: energy in the window (Wh) against
the heater's draw in the same time before pre-heating (the shift), the discomfort measured and the lowest
room temperature. Safety is not involved here: the power manager applies the safety layer after all of it.
Pure logic, driven by the thermostat's calls with local time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from qrad_agent.kpi import COMFORT_BAND_K

AFTER_S = 2 * 3600.0
"""Discomfort after the window is counted this long (s): the recovery."""


@dataclass(frozen=True)
class DrSettings:
    """Pre-heat lead (s) and band (K above the setpoint) before a shed; frost protection (°C) is the floor;
    the outcome counts discomfort ``after_s`` (s) after the window."""

    preheat_s: float = 6 * 3600.0
    band_k: float = 1.5
    frost_c: float = 7.0
    after_s: float = AFTER_S


@dataclass(frozen=True)
class DrRequest:
    """One request: local start and end, ``shed`` (at most limit_w) or ``absorb`` (at least limit_w), its id."""

    request_id: str
    start: datetime
    end: datetime
    kind: Literal["shed", "absorb"]
    limit_w: float

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError("the window must end after it starts")
        if not (math.isfinite(self.limit_w) and self.limit_w >= 0):
            raise ValueError(f"limit_w must be finite and >= 0, got {self.limit_w!r}")


@dataclass
class Expectation:
    """What the model expects of a request: discomfort (K·h) during and after, lowest room (°C); None
    values when no model is ready."""

    discomfort_kh: float | None
    lowest_c: float | None
    below_frost: bool = False


@dataclass
class Outcome:
    """What happened: energy (Wh) in the window and in the same length before pre-heat, discomfort (K·h)
    during and after, lowest room temperature (°C)."""

    request_id: str
    kind: str
    energy_in_window_wh: float
    energy_before_wh: float | None
    discomfort_during_kh: float
    discomfort_after_kh: float
    lowest_c: float
    expected_discomfort_kh: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON, rounded."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class _Active:
    request: DrRequest
    expected: Expectation
    energy_ws: float = 0.0
    before_ws: float = 0.0
    before_s: float = 0.0
    during_kh: float = 0.0
    after_kh: float = 0.0
    lowest_c: float = math.inf
    last: datetime | None = None
    samples: list[float] = field(default_factory=list)


class DemandResponse:
    """Accepted requests, what they ask of the thermostat now, and their outcomes."""

    def __init__(self, settings: DrSettings) -> None:
        self.s = settings
        self.active: list[_Active] = []
        self.outcomes: deque[Outcome] = deque(maxlen=16)
        self.completed = 0
        """Outcomes recorded so far (the last 16 are kept in ``outcomes``)."""

    def accept(self, request: DrRequest, expected: Expectation) -> None:
        """Keep ``request`` (checked by the caller with `expect`); one overlapping earlier request is replaced."""
        self.active = [a for a in self.active if a.request.end <= request.start - timedelta(seconds=self.s.preheat_s)
                       or a.request.start >= request.end]
        self.active.append(_Active(request, expected))

    def shape(self, now: datetime, setpoint_c: float, room_c: float,
              frost_c: float | None = None) -> tuple[float, float | None, float | None, str]:
        """(target °C, power cap W or None, power floor W or None, reason) for ``now``; the target is the
        setpoint unless a shed's pre-heat raises it. ``frost_c``: the frost setpoint now (default: the
        settings')."""
        frost_c = self.s.frost_c if frost_c is None else frost_c
        for a in self.active:
            r = a.request
            if r.start <= now < r.end:
                if r.kind == "shed":
                    if room_c <= frost_c:
                        return setpoint_c, None, None, f"demand response {r.request_id}: at frost protection"
                    return setpoint_c, r.limit_w, None, f"demand response {r.request_id}: at most {r.limit_w:g} W"
                if room_c < setpoint_c + self.s.band_k:
                    return setpoint_c, None, r.limit_w, f"demand response {r.request_id}: at least {r.limit_w:g} W"
            elif r.kind == "shed" and r.start - timedelta(seconds=self.s.preheat_s) <= now < r.start:
                return setpoint_c + self.s.band_k, None, None, f"demand response {r.request_id}: pre-heating"
        return setpoint_c, None, None, ""

    def observe(self, now: datetime, setpoint_c: float, room_c: float, power_w: float) -> list[Outcome]:
        """One control step's room (°C) and power (W); returns the outcomes completed at this step."""
        done = []
        for a in list(self.active):
            r = a.request
            dt_s = 0.0 if a.last is None else max(0.0, (now - a.last).total_seconds())
            a.last = now
            preheat = r.start - timedelta(seconds=self.s.preheat_s)
            span_s = (r.end - r.start).total_seconds()
            if preheat - timedelta(seconds=span_s) <= now < preheat and math.isfinite(power_w):
                a.before_ws += power_w * dt_s
                a.before_s += dt_s
            if not (r.start <= now < r.end + timedelta(seconds=self.s.after_s)):
                if now >= r.end + timedelta(seconds=self.s.after_s):
                    done.append(self._finish(a))
                continue
            cold_k = max(0.0, setpoint_c - COMFORT_BAND_K - room_c) if math.isfinite(room_c) else 0.0
            if math.isfinite(room_c):
                a.lowest_c = min(a.lowest_c, room_c)
            if now < r.end:
                a.energy_ws += (power_w if math.isfinite(power_w) else 0.0) * dt_s
                a.during_kh += cold_k * dt_s / 3600.0
            else:
                a.after_kh += cold_k * dt_s / 3600.0
        return done

    def _finish(self, a: _Active) -> Outcome:
        self.active.remove(a)
        span_s = (a.request.end - a.request.start).total_seconds()
        before = a.before_ws / 3600.0 * span_s / a.before_s if a.before_s > 0.5 * span_s else None
        outcome = Outcome(a.request.request_id, a.request.kind, a.energy_ws / 3600.0, before, a.during_kh,
                          a.after_kh, a.lowest_c if math.isfinite(a.lowest_c) else math.nan,
                          a.expected.discomfort_kh)
        self.outcomes.append(outcome)
        self.completed += 1
        return outcome

    def status(self) -> dict[str, Any]:
        """Plain JSON: the requests accepted and the last outcomes."""
        return {"requests": [{"id": a.request.request_id, "kind": a.request.kind,
                              "start": a.request.start.isoformat(), "end": a.request.end.isoformat(),
                              "limit_w": a.request.limit_w, "expected_discomfort_kh": a.expected.discomfort_kh}
                             for a in self.active],
                "outcomes": [o.as_dict() for o in self.outcomes]}
