"""Predictive heating: the learned room model turned into setpoint targets and a heat-demand forecast.

`Predictor` is fed by the thermostat every control period (`observe`: room temperature °C, measured power
W, occupants) and aggregates 15-min slots for the `RcModel`. While the model is not good enough (too few
slots, free-run fit worse than ``max_fit_k``, or unphysical parameters) `target` returns the scheduled
setpoint unchanged: the thermostat behaves as it did without prediction.

Once ready, `target` shapes the schedule:
- optimal start: before a setpoint raise the schedule announces (eco -> comfort, frost -> eco, ...), the model
  simulates the room at full power from now; heating starts (full power, held here) once the time left is
  no longer than the warm-up to the aim, times a learned factor, and at most ``max_lead_s`` ahead. The aim
  is ``arrival_tolerance_k`` below the raised setpoint when the last rise there from the bottom of the
  raised band is short (``max_sprint_s``) and the sun will not lift the room after it, else that bottom
  (every minute above the current band before the raise counts as too warm). On heavy-load days without
  sun the room is first held at the top of the current band for ``precharge_s`` (decided once per raise;
  the envelope warms, the last rise is quicker); on other days, with the higher aim and no sun before the
  raise, for PREPOSITION_S before the start, so the last rise starts settled there. Once heating to the
  raised setpoint it goes on until the plan is ``boost_hysteresis_s`` ahead (fewer compute stops;
  ABOVE_TOP_SLACK_S once above the current band); a start that is due wins over the coast after a setback.
  Each arrival implies a lead factor (the error against the aim, over the rise the lead gave); the factor
  is the median of the last few;
- optimal stop: before a setback, heating stops (the target becomes the lower setpoint) when the model says
  the room, held at ``stop_w``, stays within ``stop_margin_k`` of the current setpoint until the setback;
  if the room still falls that far it heats again. ``stop_w`` is a low compute load, not the idle floor:
  the heat of the stop then comes with jobs running near the board's most core-hours per kWh (dynamic CPU
  power C·V²·f falls faster than the work f as the P-state drops; under all cores at the lowest P-state the
  idle floor is shared by less work). It drops to the minimum while the room is above the setpoint.

`forecast` gives the heat the room will want in each 15-min slot of the next 24 h (W), from the model,
the schedule (with optimal start) and the outdoor forecast.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from collections.abc import Callable

from qrad_agent.control.schedule import WeeklySchedule
from qrad_agent.model.outdoor import OutdoorForecast, calendar_s
from qrad_agent.model.bias import DailyBias
from qrad_agent.model.rc import RcModel, Slot

FORECAST_SLOTS = 96
BIAS_SLOTS = 4
"""The slots of each forecast (its first hour) whose outcome teaches the daily residual profile."""
_EPOCH = datetime(1970, 1, 1)
LOAD_LOOKAHEAD_S = 12 * 3600.0
PRECHARGE_LOAD = 0.6
"""A pre-charge only when holding comfort over the next LOAD_LOOKAHEAD_S (s) needs this share of the
heater's maximum (a cold week; in a mild or sunny one the stored heat came back as too warm at the floor)."""
SUN_RISE_K = 0.1
"""No pre-charge while the model room would rise this much (K) at minimum power before the raise."""
SUN_AFTER_S = 6 * 3600.0
"""Aim at the bottom of the raised band when the model room, at minimum power, rises SUN_AIM_RISE_K by
itself before this long (s) after the raise: the sun will lift it, and heat added for a higher arrival came back
as too warm at the floor (an April week of `benchmarks/thermostat.py`: 112.9 against 110.3 K·h)."""
SUN_AIM_RISE_K = 0.3
"""The sun lift (K) of the model room at minimum power, before SUN_AFTER_S after a raise, that moves the aim
to the bottom of the raised band: a smaller lift leaves a room held at the raised setpoint inside its comfort
band (0.5 K), so the heat of the higher arrival does not come back as too warm. 0.1 K also sent a sunny
December Saturday to the band's bottom, a miss (-0.44 K); 0.3 K keeps the April week's floor figure
(110.32 K·h, as with 0.1 K; 2-3 h of SUN_AFTER_S instead gave 112.45 against on/off's 111.11)."""
EDGE_AIM_K = 0.45
"""Below the raised setpoint (K): the bottom of its comfort band (0.5 K), where the two bands meet."""
PREPOSITION_S = 900.0
"""When the aim is the high one and no sun lifts the room before the raise, the room is brought to the top of
the current band this long (s) before the planned full-power start, so the last rise starts from there,
settled: a rise from the eco setpoint itself (a mild day, no pre-charge) is timed over its whole 0.7 K and
landed 0.05-0.15 K late or early. 900 s over the three heating weeks of `benchmarks/thermostat.py`: 34 of
36 raises within 0.3 K (32 without it, the rest as here); 1800 s stored enough heat for the December sun
to raise too warm at the floor (12.02 against on/off's 11.88 K·h)."""
ABOVE_TOP_SLACK_S = 300.0
"""Once the room is at the top of the current band, a boost that is ahead of its plan stops after this much
(s) instead of ``boost_hysteresis_s``: from there every minute counts as too warm (1.14 against 1.22 K·h
over the three heating weeks, the same arrivals)."""
FACTOR_RANGE = (0.5, 3.0)
LEARN_STEP = 1.25
LEARN_WINDOW = 9
LEARN_MIN = 5
"""The lead factor is the median of the factors the last LEARN_WINDOW arrivals imply, once there are
LEARN_MIN of them: one odd morning (the first start after the model became ready, a window left open)
must not move every later start. The implied factors of one simulated December scatter by about ±15 %
(0.83-1.31); with the median of three, two early arrivals of the warm-up days set 0.85 and the next raise
landed 0.33 K under (`benchmarks/thermostat.py`)."""
STOP_LOOKAHEAD_S = 2 * 3600.0
SMOOTH_S = 600.0
"""Room temperatures fed to a free run are smoothed over this much either side (s)."""


@dataclass(frozen=True)
class PredictSettings:
    """Predictive heating settings (see ThermostatConfig.predict for the meaning and sources)."""

    slot_s: float = 900.0
    order: int = 2
    forgetting: float = 0.998
    max_fit_k: float = 0.25
    min_slots: int = 96
    max_lead_s: float = 6 * 3600.0
    arrival_tolerance_k: float = 0.23
    precharge_s: float = 10 * 3600.0
    max_sprint_s: float = 3600.0
    stop_margin_k: float = 0.45
    stop_w: float = 140.0
    coast_margin_k: float = 0.3
    precharge_band_k: float = 0.45
    boost_hysteresis_s: float = 900.0
    optimal_stop: bool = True
    assumed_outdoor_c: float = 5.0


@dataclass
class _Event:
    """A setpoint change ahead: when (calendar s), from and to (°C), and what was decided for it."""

    at_s: float
    from_c: float
    to_c: float
    started_s: float | None = None
    lead_model_s: float | None = None
    capped: bool = False
    boosting: bool = False
    start_room_c: float | None = None
    aim_c: float | None = None
    precharge: bool | None = None
    factor: float = 1.0


@dataclass
class _SlotSums:
    start_s: float
    start_air_c: float
    power_ws: float = 0.0
    occupants_s: float = 0.0
    duration_s: float = 0.0


@dataclass
class Arrival:
    """One raise: calendar time (s), setpoint (°C), room at that time (°C), pre-heat lead used (s)."""

    at_s: float
    setpoint_c: float
    room_c: float
    lead_s: float | None

    @property
    def error_k(self) -> float:
        """Room minus setpoint at the raise (K)."""
        return self.room_c - self.setpoint_c


@dataclass
class _Recent:
    samples: deque[tuple[float, float, float, float]] = field(default_factory=lambda: deque(maxlen=200))


class Predictor:
    """The model, its inputs and the schedule shaping; pure logic driven by the thermostat's calls."""

    def __init__(self, settings: PredictSettings, min_w: float, max_w: float,
                 power_cap: Callable[[datetime], float | None] | None = None) -> None:
        """``min_w``, ``max_w``: the heater's range (W); ``power_cap``: a cap (W, or None) at a local time that
        plans must respect (quiet hours)."""
        self.s = settings
        self.min_w, self.max_w = min_w, max_w
        self.stop_w = min(max_w, max(min_w, settings.stop_w))
        """The power (W) held through an optimal stop (``stop_w`` within the heater's range)."""
        self.power_cap = power_cap
        self.model = RcModel(settings.slot_s, settings.order, settings.forgetting)
        self.outdoor = OutdoorForecast()
        self.lead_factor = 1.0
        self._implied: deque[float] = deque(maxlen=LEARN_WINDOW)
        self.arrivals: deque[Arrival] = deque(maxlen=64)
        self.reason = "learning"
        self._slot: _SlotSums | None = None
        self._recent = _Recent()  # (calendar s, room °C, power W, occupants) at each observation
        self._event: _Event | None = None
        self._stopping_for: float | None = None
        self._last_setpoint_c: float | None = None
        self._coast_to_c: float | None = None
        self.hold_w: float | None = None
        """Set by `target`: a power (W) decided here, applied as it is (full power for an optimal start,
        the minimum for an optimal stop), or None when the controller follows the target."""
        self.slot_power: deque[tuple[float, float]] = deque(maxlen=FORECAST_SLOTS)  # (slot start s, W)
        self.bias = DailyBias()

    # -- inputs -----------------------------------------------------------------------------------------
    def outdoor_at(self, t_s: float) -> tuple[float, float]:
        """Outdoor °C and irradiance W/m² at calendar second ``t_s`` (assumed_outdoor_c and 0 if unknown)."""
        known = self.outdoor.at(t_s)
        return (known[0], known[1]) if known is not None else (self.s.assumed_outdoor_c, 0.0)

    def observe(self, now: datetime, room_c: float, power_w: float, occupants: float = 0.0) -> None:
        """One control period's measurements; closes a slot at each multiple of slot_s (calendar)."""
        t_s = calendar_s(now)
        if not (math.isfinite(room_c) and math.isfinite(power_w)):
            return
        occupants = occupants if math.isfinite(occupants) else 0.0
        if self._recent.samples:
            prev_t, _, prev_w, prev_n = self._recent.samples[-1]
            dt_s = t_s - prev_t
            if self._slot is not None and 0 < dt_s <= 2 * self.s.slot_s:
                self._slot.power_ws += prev_w * dt_s
                self._slot.occupants_s += prev_n * dt_s
                self._slot.duration_s += dt_s
        self._recent.samples.append((t_s, room_c, power_w, occupants))
        boundary = math.floor(t_s / self.s.slot_s) * self.s.slot_s
        if self._slot is None or boundary > self._slot.start_s:
            self._close(boundary, room_c)
        self._track_arrival(t_s, room_c)

    def _close(self, boundary_s: float, room_c: float) -> None:
        old = self._slot
        self._slot = _SlotSums(boundary_s, room_c)
        if old is None:
            return
        if boundary_s - old.start_s != self.s.slot_s or old.duration_s < 0.8 * self.s.slot_s:
            self.model.history.clear()  # a gap (restart, missing room temperature): no slot across it
            return
        self.slot_power.append((old.start_s, old.power_ws / old.duration_s))
        self.bias.actual(old.start_s, old.power_ws / old.duration_s)
        outdoor_c, ghi = self.outdoor_at(old.start_s + self.s.slot_s / 2)
        self.model.update(Slot(old.start_air_c, old.power_ws / old.duration_s, outdoor_c, ghi,
                               old.occupants_s / old.duration_s))

    def set_weather(self, points: list[tuple[datetime, float, float]], now: datetime) -> int:
        """Outdoor forecast points (local time, °C, W/m²); raises ValueError (nothing kept) when invalid."""
        return self.outdoor.update([(calendar_s(t), c, g) for t, c, g in points], calendar_s(now))

    # -- model use --------------------------------------------------------------------------------------
    def ready(self) -> tuple[bool, str]:
        """Whether predictions are used, and why not."""
        return self.model.ready(self.s.max_fit_k, self.s.min_slots)

    def _window(self, t_s: float) -> tuple[Slot, Slot] | None:
        """(the slot of the last slot_s, the slot starting now) for a free run from ``t_s``, from the samples
        up to ``t_s``."""
        samples = self._recent.samples
        if len(samples) < 2 or t_s - samples[0][0] < self.s.slot_s * 0.9:
            return None
        start_s = t_s - self.s.slot_s
        in_window = [s for s in samples if start_s <= s[0] <= t_s]
        if not in_window:
            return None
        power_w = sum(s[2] for s in in_window) / len(in_window)
        occ = sum(s[3] for s in in_window) / len(in_window)
        out_prev, ghi_prev = self.outdoor_at(start_s + self.s.slot_s / 2)
        out_now, ghi_now = self.outdoor_at(t_s + self.s.slot_s / 2)
        prev = Slot(self._smoothed(in_window, start_s), power_w, out_prev, ghi_prev, occ)
        cur = Slot(self._smoothed(in_window, t_s), power_w, out_now, ghi_now, occ)
        return prev, cur

    @staticmethod
    def _smoothed(samples: list[tuple[float, float, float, float]], at_s: float) -> float:
        """Room temperature (°C) at ``at_s``: the mean of the samples within SMOOTH_S of it, a line fitted
        through them evaluated at ``at_s`` (sensor noise of a few hundredths of a kelvin would otherwise
        move a start decision by tens of minutes, and the room's rise must not be lagged)."""
        near = [(s[0], s[1]) for s in samples if abs(s[0] - at_s) <= SMOOTH_S]
        if len(near) < 3:
            return min(samples, key=lambda s: abs(s[0] - at_s))[1]
        n = len(near)
        mean_t = sum(t for t, _ in near) / n
        mean_c = sum(c for _, c in near) / n
        var_t = sum((t - mean_t) ** 2 for t, _ in near)
        slope = 0.0 if var_t <= 0 else sum((t - mean_t) * (c - mean_c) for t, c in near) / var_t
        return mean_c + slope * (at_s - mean_t)

    def _capped(self, power_w: float, t_s: float) -> float:
        """``power_w`` within the power cap at calendar second ``t_s``."""
        if self.power_cap is None:
            return power_w
        cap = self.power_cap(_EPOCH + timedelta(seconds=t_s))
        return power_w if cap is None else min(power_w, max(self.min_w, cap))

    def _run(self, t_s: float, window: tuple[Slot, Slot], power_w: float, slots: int) -> list[float]:
        prev, cur = window
        cur = Slot(cur.air_c, self._capped(power_w, t_s), cur.outdoor_c, cur.ghi_w_m2, cur.occupants)
        future = []
        for k in range(1, slots + 1):
            out_c, ghi = self.outdoor_at(t_s + (k + 0.5) * self.s.slot_s)
            future.append(Slot(math.nan, self._capped(power_w, t_s + k * self.s.slot_s), out_c, ghi,
                               cur.occupants))
        return [cur.air_c, *self.model.simulate(prev, cur, future)]

    def warmup_s(self, t_s: float, goal_c: float, window: tuple[Slot, Slot] | None = None) -> float | None:
        """Model time (s) from ``t_s`` at full power until the room is at ``goal_c`` (°C); None if not
        within max_lead_s (or no window yet). ``window``: `_window(t_s)` when the caller has it already."""
        window = window or self._window(t_s)
        if window is None:
            return None
        slots = int(self.s.max_lead_s / self.s.slot_s) + 1
        path = self._run(t_s, window, self.max_w, slots)
        if path[0] >= goal_c:
            return 0.0
        for k in range(1, len(path)):
            if path[k] >= goal_c:
                rise = path[k] - path[k - 1]
                frac = 1.0 if rise <= 0 else min(1.0, max(0.0, (goal_c - path[k - 1]) / rise))
                return (k - 1 + frac) * self.s.slot_s
        return None

    def expected_fall_k(self, now: datetime, power_w: float, span_s: float) -> float:
        """The fall (K, >= 0) of the room over ``span_s`` (s) up to ``now`` that the model explains at
        ``power_w`` (W): its one-slot step from the room as measured ``span_s`` ago (from the samples up to
        then, so the fall itself does not enter), scaled linearly to the span (the fast
        pole's first minutes fall a little faster than that: about 0.4 of a 15-min fall in 5 min against
        the 0.33 assumed, for a 24-min pole). 0 when the model is not ready."""
        if not self.ready()[0]:
            return 0.0
        t_s = calendar_s(now)
        window = self._window(t_s - span_s)
        if window is None:
            return 0.0
        path = self._run(t_s - span_s, window, power_w, 1)
        return max(0.0, (path[0] - path[1]) * span_s / self.s.slot_s)

    def coasts(self, t_s: float, until_s: float, floor_c: float, power_w: float) -> bool:
        """True when the model says the room stays at or above ``floor_c`` from ``t_s`` to ``until_s`` at
        ``power_w`` (W)."""
        window = self._window(t_s)
        if window is None:
            return False
        ahead = max(0.0, (until_s - t_s) / self.s.slot_s)
        slots = max(1, math.ceil(ahead))
        path = self._run(t_s, window, power_w, slots)
        whole = math.floor(ahead)
        at_end = path[whole] if whole >= slots else path[whole] + (ahead - whole) * (path[whole + 1] - path[whole])
        return min(*path[:whole + 1], at_end) >= floor_c

    # -- schedule shaping -------------------------------------------------------------------------------
    def target(self, now: datetime, setpoint_c: float, schedule: WeeklySchedule | None) -> float:
        """The setpoint (°C) the controller should follow now, given the scheduled one; sets ``reason``."""
        self.hold_w = None
        ok, why = self.ready()
        if schedule is None or not ok:
            self.reason = why if not ok else "no schedule"
            self._event = None
            return setpoint_c
        t_s = calendar_s(now)
        coasting = self._coasting(t_s, setpoint_c)
        change = schedule.next_change(now)
        event = None
        if change is not None:
            at_s = calendar_s(change)
            to_c = schedule.setpoint_at(change)
            if self._event is None or self._event.at_s != at_s:
                self._event = _Event(at_s, setpoint_c, to_c)
            event = self._event
        if event is not None and event.to_c > setpoint_c:
            target_c = self._start(event, t_s, event.at_s - t_s, setpoint_c)
            if self.hold_w is not None or not coasting:  # a start that is due wins over coasting
                return target_c
        if coasting:
            self.hold_w = self.min_w
            self.reason = f"coasting down to {setpoint_c:g} °C"
            return setpoint_c
        if event is None:
            self.reason = "no setpoint change ahead"
            return setpoint_c
        if event.to_c < setpoint_c and self.s.optimal_stop:
            return self._stop(event, t_s, event.at_s - t_s, setpoint_c)
        self.reason = "following the schedule"
        return setpoint_c

    def _coasting(self, t_s: float, setpoint_c: float) -> bool:
        """After a setback, heating stays at its minimum while the room is above the lower setpoint's
        comfort band (less ``coast_margin_k``): the controller, which follows a setpoint change over its
        integral time, would otherwise go on heating a room that is already too warm for the new setpoint."""
        previous, self._last_setpoint_c = self._last_setpoint_c, setpoint_c
        if previous is not None and setpoint_c < previous - 0.05:
            self._coast_to_c = setpoint_c
        if self._coast_to_c is None:
            return False
        samples = self._recent.samples
        room_c = samples[-1][1] if samples else math.nan
        if setpoint_c != self._coast_to_c or not room_c > setpoint_c + self.s.coast_margin_k:
            self._coast_to_c = None
            return False
        return True

    def _start(self, event: _Event, t_s: float, left_s: float, setpoint_c: float) -> float:
        if left_s > max(self.s.max_lead_s, self.s.precharge_s):
            self.reason = "following the schedule"
            return setpoint_c
        if left_s > self.s.max_lead_s:
            if self._precharging(event, t_s, left_s):
                self.reason = f"pre-heating for {event.to_c:g} °C in {left_s / 60:.0f} min"
                return min(event.to_c, setpoint_c + self.s.precharge_band_k)
            self.reason = "following the schedule"
            return setpoint_c
        if not event.boosting:
            event.aim_c = self._aim(t_s, event)
        window = self._window(t_s)
        room_c = None if window is None else window[1].air_c
        lead_s = self.warmup_s(t_s, event.aim_c if event.aim_c is not None else event.to_c - EDGE_AIM_K, window)
        capped = lead_s is None or lead_s * self.lead_factor >= self.s.max_lead_s
        needed_s = self.s.max_lead_s if capped else lead_s * self.lead_factor  # type: ignore[operator]
        top_c = min(event.to_c, setpoint_c + self.s.precharge_band_k)  # the top of the current band
        slack_s = 0.0 if not event.boosting else self.s.boost_hysteresis_s
        if event.boosting and room_c is not None and room_c >= top_c:
            slack_s = min(slack_s, ABOVE_TOP_SLACK_S)
        if left_s <= needed_s + slack_s:  # full power from now only just makes it: heat to the raised setpoint
            if event.started_s is None:
                event.started_s, event.lead_model_s, event.capped = t_s, lead_s, capped
                event.factor = self.lead_factor
                event.start_room_c = room_c
            event.boosting = True
            self.hold_w = self.max_w
            self.reason = f"optimal start for {event.to_c:g} °C in {left_s / 60:.0f} min"
            return event.to_c
        event.boosting = False
        if lead_s == 0.0 and event.aim_c is not None and left_s <= self.s.max_sprint_s:
            # already there (the sun, a warm afternoon) so close to the raise: hold it, not fall away from it
            self.reason = f"holding {event.aim_c:.2f} °C for {event.to_c:g} °C in {left_s / 60:.0f} min"
            return event.aim_c
        # the last rise starts settled at the band's top when the aim is the high one
        settle = (left_s <= needed_s + PREPOSITION_S and event.aim_c is not None
                  and event.aim_c > event.to_c - EDGE_AIM_K)
        if event.started_s is not None or self._precharging(event, t_s, left_s, settle):
            # ahead of the plan: the top of the current band, which also warms the envelope, so the last
            # rise at full power is quicker (air and envelope are about 0.4 K apart while it holds)
            self.reason = f"pre-heating for {event.to_c:g} °C in {left_s / 60:.0f} min"
            return top_c
        self.reason = f"pre-heat in {(left_s - needed_s) / 60:.0f} min"
        return setpoint_c

    def _precharging(self, event: _Event, t_s: float, left_s: float, settle: bool = False) -> bool:
        """Whether to hold the top of the current band now for ``event``: within ``precharge_s`` of it, decided
        once per raise on a heavy-load day (`_heavy_load`), or when ``settle`` (the last rise is near), and
        not while the sun lifts the room."""
        if left_s <= self.s.precharge_s and event.precharge is None:
            event.precharge = self._heavy_load(t_s, event.to_c)
        wanted = settle or (left_s <= self.s.precharge_s and bool(event.precharge))
        return wanted and not self._sunlit(t_s, event.at_s)

    def _heavy_load(self, t_s: float, to_c: float) -> bool:
        """True when holding ``to_c`` (°C) over the next LOAD_LOOKAHEAD_S needs at least PRECHARGE_LOAD of
        the heater's maximum, from the model's loss coefficient (W/K) and the mean outdoor temperature
        ahead: only then is the last rise slow enough for a pre-charge to pay, and the heat stored then is
        used by the heater's own comfort period, not returned as too warm when the sun comes."""
        phys = self.model.physical()
        if phys is None:
            return False
        hours = int(LOAD_LOOKAHEAD_S // 3600)
        outdoor_c = sum(self.outdoor_at(t_s + h * 3600.0)[0] for h in range(hours)) / hours
        return bool(phys.loss_w_k * (to_c - outdoor_c) >= PRECHARGE_LOAD * self.max_w)

    def _sunlit(self, t_s: float, until_s: float, rise_k: float = SUN_RISE_K) -> bool:
        """True when the model room, at minimum power from ``t_s``, rises ``rise_k`` (K) or more by itself before
        ``until_s`` (the sun): heat stored in the room before the raise would then only leave it too warm
        for longer with the heater at its floor (a pre-charge before every raise added 2 K·h of that to a
        December week and 8 K·h to an April week in `benchmarks/thermostat.py`)."""
        window = self._window(t_s)
        if window is None:
            return False
        slots = max(1, math.ceil((until_s - t_s) / self.s.slot_s))
        path = self._run(t_s, window, self.min_w, slots)
        return max(path[1:]) >= path[0] + rise_k

    def _aim(self, t_s: float, event: _Event) -> float:
        """The room temperature (°C) to arrive at: ``arrival_tolerance_k`` below the raised setpoint when the
        model says the last rise there, from the bottom of the raised comfort band, takes at most
        ``max_sprint_s`` at full power; else that bottom (EDGE_AIM_K below): every minute the room spends
        above the current comfort band before the raise counts as too warm, and a cold room whose heater is
        near its limit rises slowly there."""
        edge_c = event.to_c - EDGE_AIM_K
        high_c = event.to_c - self.s.arrival_tolerance_k
        if high_c <= edge_c:
            return high_c
        if self._sunlit(t_s, event.at_s + SUN_AFTER_S, SUN_AIM_RISE_K):
            return edge_c
        to_edge_s = self.warmup_s(t_s, edge_c)
        to_high_s = self.warmup_s(t_s, high_c)
        if to_edge_s is None or to_high_s is None or to_high_s - to_edge_s > self.s.max_sprint_s:
            return edge_c
        return high_c

    def _stop(self, event: _Event, t_s: float, left_s: float, setpoint_c: float) -> float:
        floor_c = setpoint_c - self.s.stop_margin_k
        if left_s > STOP_LOOKAHEAD_S:
            self.reason = "following the schedule"
            return setpoint_c
        samples = self._recent.samples
        room_c = samples[-1][1] if samples else math.nan
        if self._stopping_for == event.at_s:
            if room_c < floor_c:
                self._stopping_for = None  # fell further than the model said: heat again
            else:
                return self._stopped(event, left_s, room_c, setpoint_c)
        elif room_c >= setpoint_c - 0.1 and self.coasts(t_s, event.at_s, floor_c, self.stop_w):
            self._stopping_for = event.at_s
            return self._stopped(event, left_s, room_c, setpoint_c)
        self.reason = "following the schedule"
        return setpoint_c

    def _stopped(self, event: _Event, left_s: float, room_c: float, setpoint_c: float) -> float:
        """Hold the stop: ``stop_w``, or the minimum while the room is above ``setpoint_c``; the lower
        setpoint as the target."""
        self.hold_w = self.min_w if room_c > setpoint_c else self.stop_w
        self.reason = f"optimal stop before {event.to_c:g} °C in {left_s / 60:.0f} min, held at {self.hold_w:.0f} W"
        return event.to_c

    def _track_arrival(self, t_s: float, room_c: float) -> None:
        event = self._event
        if event is None or event.to_c <= event.from_c:
            return
        if t_s < event.at_s:
            return
        lead_s = None if event.started_s is None else event.at_s - event.started_s
        self.arrivals.append(Arrival(event.at_s, event.to_c, room_c, lead_s))
        self._learn(event, room_c)
        self._event = None

    def _learn(self, event: _Event, room_c: float) -> None:
        """Learn from this raise's arrival: the room's rise over the lead it had (K/s) says how much longer
        (late) or shorter (early) the lead should have been to arrive at the aim (``arrival_tolerance_k``
        below the setpoint); that times the factor the start used, at most LEARN_STEP either way, is the
        factor this arrival implies. The lead factor is the median of the last LEARN_WINDOW implied factors
        once there are LEARN_MIN. A raise the room reached without a start (already there) or with the lead
        at its bound teaches nothing."""
        if event.started_s is None or event.capped:
            return
        aim_c = event.aim_c if event.aim_c is not None else event.to_c - EDGE_AIM_K
        error_k = room_c - aim_c
        rise_k = None if event.start_room_c is None else room_c - event.start_room_c
        if rise_k is not None and rise_k > 0.05:
            change = 1.0 - error_k / rise_k  # lead wanted / lead had, for a rise at the same mean rate
        elif error_k < -0.05:
            change = LEARN_STEP
        else:
            return
        change = min(LEARN_STEP, max(1.0 / LEARN_STEP, change))
        self._implied.append(event.factor * change)
        if len(self._implied) >= LEARN_MIN:
            factor = statistics.median(self._implied)
            self.lead_factor = min(FACTOR_RANGE[1], max(FACTOR_RANGE[0], factor))

    # -- heat-demand forecast ---------------------------------------------------------------------------
    def forecast(self, now: datetime, schedule: WeeklySchedule) -> list[float] | None:
        """Heat demand (W) of each of the FORECAST_SLOTS slots from the current slot boundary on; None when
        the model is not ready (the caller falls back to persistence).

        The model room is driven slot by slot as the thermostat will drive it (`_planned`): each slot's
        power is what brings it to the planned temperature at the slot's end, within the heater's range
        (and the quiet-hours cap), or ``stop_w`` while an optimal stop holds. Each slot then
        gets the daily residual profile (`DailyBias`) learned from the last forecasts' first hour."""
        ok, _ = self.ready()
        t_s = calendar_s(now)
        window = self._window(t_s)
        if not ok or window is None:
            return None
        first_s = calendar_s(self.slot_start(now))
        lead_s = self._typical_lead_s()
        prev, cur = window
        plan: list[float] = []
        for k in range(FORECAST_SLOTS):
            begin_s = first_s + k * self.s.slot_s
            out_c, ghi = self.outdoor_at(begin_s + self.s.slot_s / 2)
            cur = Slot(cur.air_c, 0.0, out_c, ghi, cur.occupants)
            top_w = self._capped(self.max_w, begin_s)
            target_c = self._planned(begin_s, schedule, lead_s, prev, cur, t_s)
            if target_c is None:  # an optimal stop
                power_w = self._capped(self.stop_w, begin_s)
            else:
                power_w = self.model.power_for(prev, cur, target_c)
            power_w = self.min_w if math.isnan(power_w) else min(top_w, max(self.min_w, power_w))
            cur = Slot(cur.air_c, power_w, out_c, ghi, cur.occupants)
            nxt = self.model.step(prev, cur)
            prev, cur = cur, Slot(nxt, power_w, out_c, ghi, cur.occupants)
            plan.append(power_w)
        self.bias.issued(first_s, self.s.slot_s, plan, BIAS_SLOTS)
        return [min(self._capped(self.max_w, first_s + k * self.s.slot_s),
                    max(self.min_w, w + self.bias.at(first_s + k * self.s.slot_s))) for k, w in enumerate(plan)]

    def _typical_lead_s(self) -> float:
        """The pre-heat lead (s) of the recent raises (their median), max_lead_s / 3 before any."""
        leads = sorted(a.lead_s for a in list(self.arrivals)[-6:] if a.lead_s is not None)
        return leads[len(leads) // 2] if leads else self.s.max_lead_s / 3

    def _precharge_planned(self, at_s: float, to_c: float, now_s: float) -> bool:
        """Whether the raise at ``at_s`` gets a pre-charge: as decided already for the raise ahead, else as
        it will be decided, `precharge_s` before it (or now, if that is past) on the forecast known now."""
        event = self._event
        if event is not None and event.at_s == at_s and event.precharge is not None:
            return event.precharge
        return self._heavy_load(max(at_s - self.s.precharge_s, now_s), to_c)

    def _planned(self, begin_s: float, schedule: WeeklySchedule, lead_s: float, prev: Slot,
                 cur: Slot, now_s: float) -> float | None:
        """The model room's temperature (°C) at the end of the slot from ``begin_s`` as `target` shapes it,
        or None for the stop power (an optimal stop that the model room coasts through)."""
        end = _EPOCH + timedelta(seconds=begin_s + self.s.slot_s)
        setpoint_c = schedule.setpoint_at(end - timedelta(seconds=1))
        change = schedule.next_change(end - timedelta(seconds=1))
        if change is None:
            return setpoint_c
        left_s = calendar_s(change) - calendar_s(end)
        to_c = schedule.setpoint_at(change)
        if to_c > setpoint_c:
            if left_s < lead_s:
                return to_c - self.s.arrival_tolerance_k
            if left_s < self.s.precharge_s and self._precharge_planned(calendar_s(change), to_c, now_s):
                return min(to_c, setpoint_c + self.s.precharge_band_k)
        elif to_c < setpoint_c and self.s.optimal_stop and left_s + self.s.slot_s <= STOP_LOOKAHEAD_S:
            if self._model_coasts(prev, cur, left_s + self.s.slot_s, setpoint_c - self.s.stop_margin_k):
                return None
        return setpoint_c

    def _model_coasts(self, prev: Slot, cur: Slot, span_s: float, floor_c: float) -> bool:
        """Whether the model room, from (``prev``, ``cur``) at the stop power, stays at or above ``floor_c``
        for ``span_s`` (whole slots, at least one)."""
        cur = Slot(cur.air_c, self.stop_w, cur.outdoor_c, cur.ghi_w_m2, cur.occupants)
        for _ in range(max(1, round(span_s / self.s.slot_s))):
            nxt = self.model.step(prev, cur)
            if nxt < floor_c:
                return False
            prev, cur = cur, Slot(nxt, self.stop_w, cur.outdoor_c, cur.ghi_w_m2, cur.occupants)
        return True

    def expect_shed(self, now: datetime, start: datetime, end: datetime, limit_w: float,
                    setpoint_at: Callable[[datetime], float], band_k: float, preheat_s: float,
                    after_s: float) -> tuple[float, float] | None:
        """The model room under a shed request (at most ``limit_w`` W from ``start`` to ``end``, local time),
        pre-heated ``band_k`` K above the setpoint for ``preheat_s`` before: (discomfort K·h below the comfort
        band during the window and ``after_s`` after it, lowest room °C then); None when the model is not
        ready. Slots of slot_s from now; each slot's power is what brings the model room to its target,
        within the heater's range and the limit."""
        ok, _ = self.ready()
        window = self._window(calendar_s(now))
        if not ok or window is None:
            return None
        prev, cur = window
        band = 0.5
        discomfort_kh, lowest_c = 0.0, math.inf
        t = now
        horizon = end + timedelta(seconds=after_s)
        while t < horizon:
            slot_end = t + timedelta(seconds=self.s.slot_s)
            setpoint_c = setpoint_at(slot_end)
            target_c = setpoint_c + band_k if start - timedelta(seconds=preheat_s) <= t < start else setpoint_c
            top_w = limit_w if start <= t < end else self._capped(self.max_w, calendar_s(t))
            out_c, ghi = self.outdoor_at(calendar_s(t) + self.s.slot_s / 2)
            cur = Slot(cur.air_c, 0.0, out_c, ghi, cur.occupants)
            power_w = self.model.power_for(prev, cur, target_c)
            power_w = self.min_w if math.isnan(power_w) else min(top_w, max(self.min_w, power_w))
            cur = Slot(cur.air_c, power_w, out_c, ghi, cur.occupants)
            nxt = self.model.step(prev, cur)
            prev, cur = cur, Slot(nxt, power_w, out_c, ghi, cur.occupants)
            if t >= start:
                lowest_c = min(lowest_c, nxt)
                discomfort_kh += max(0.0, setpoint_c - band - nxt) * self.s.slot_s / 3600.0
            t = slot_end
        return discomfort_kh, lowest_c

    def slot_start(self, now: datetime) -> datetime:
        """The start of the slot ``now`` is in (local time)."""
        into_s = calendar_s(now) % self.s.slot_s
        return now - timedelta(seconds=into_s)

    def persistence_forecast(self, now: datetime) -> list[float] | None:
        """Each slot's power of the day before (W), for FORECAST_SLOTS slots from the current one; None
        until a full day of slots is known."""
        known = dict(self.slot_power)
        first_s = calendar_s(self.slot_start(now))
        out = [known.get(first_s + k * self.s.slot_s - 86400.0) for k in range(FORECAST_SLOTS)]
        if any(w is None for w in out):
            return None
        return [float(w) for w in out]  # type: ignore[arg-type]

    def weather_source(self, now: datetime) -> Literal["forecast", "persistence", "none"]:
        """Where the outdoor temperature of the next hours comes from: forecast, persistence or none."""
        known = self.outdoor.at(calendar_s(now) + 3600.0)
        if known is None:
            return "none"
        return "forecast" if known[2] == "forecast" else "persistence"

    # -- persistence and status -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain-JSON state: the model, the learned lead factor."""
        return {"model": self.model.state(), "lead_factor": self.lead_factor}

    def restore(self, state: dict[str, Any]) -> None:
        """Load `state`; raises ValueError/TypeError/KeyError (nothing changed) when malformed."""
        factor = float(state.get("lead_factor", 1.0))
        if not FACTOR_RANGE[0] <= factor <= FACTOR_RANGE[1]:
            raise ValueError(f"lead_factor {factor} out of range")
        self.model.restore(state["model"])
        self.lead_factor = factor

    def status(self) -> dict[str, Any]:
        """Plain-JSON status: readiness, fit, physical read-out, lead factor, last arrival error."""
        ok, why = self.ready()
        phys = self.model.physical()
        last = self.arrivals[-1] if self.arrivals else None
        return {"ready": ok, "why": why, "reason": self.reason, "slots": self.model.samples,
                "fit_rms_k": None if math.isnan(self.model.fit_rms_k) else round(self.model.fit_rms_k, 3),
                "loss_w_k": None if phys is None else round(phys.loss_w_k, 2),
                "time_constants_h": None if phys is None else [round(t / 3600, 2) for t in phys.time_constants_s],
                "lead_factor": round(self.lead_factor, 3),
                "last_arrival_error_k": None if last is None else round(last.error_k, 2),
                "outdoor": "none" if not self.outdoor.times_s else "forecast"}
