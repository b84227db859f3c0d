"""The control loop: room temperature in, heat demand (W) out, every ``period_s`` on the loop clock.

Each period it samples the measured power (so the power manager learns its curve), picks the setpoint from
the mode and the weekly schedule, takes the best fresh room temperature, runs the selected controller
(PID or the conventional hysteresis baseline) and hands the demand to the power manager, unless the safety
layer holds power at its minimum. With no usable room temperature the demand is the minimum and the PID
does not integrate (safe state, with the reason logged once); it resumes from where it stood.
A step at the same clock time as the last one (dt <= 0) keeps the last output (logged once, counted); a
step after a gap of more than GAP_PERIODS periods (a suspend) restarts the controller from the current
output at the current temperature, and says so. A change of the room channel in use is logged with why.
It ends every period with a heartbeat to the safety layer and a systemd watchdog ping.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from datetime import timedelta
from typing import Protocol

import structlog

from qrad_agent.clock import Clock
from qrad_agent.config import ThermostatConfig
from qrad_agent.control.demand_response import DemandResponse, DrRequest, DrSettings, Expectation
from qrad_agent.control.hysteresis import HysteresisThermostat
from qrad_agent.control.pid import PidController, PidGains
from qrad_agent.control.predict import Predictor, PredictSettings
from qrad_agent.control.quiet import QuietHours, parse_hhmm
from qrad_agent.control.schedule import Mode, ModeSetpoints, WeeklySchedule, default_home
from qrad_agent.control.window import WindowDetector, WindowSettings
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sdnotify import Notifier
from qrad_agent.sensing.hub import Choice, SensorHub

log = structlog.get_logger(component="thermostat")

SUMMER_HYSTERESIS_K = 0.5
"""The summer floor switches off at comfort_max_c and back on this far (K) below it."""


UNSAFE_INPUT = {"no valid room temperature", "mode off"}


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0]


GAP_PERIODS = 4
"""A step more than this many periods after the last one (a suspend, a stalled loop) restarts the controller
from the current output: the state it kept describes a room that has moved on since."""


class Controller(Protocol):
    """A room controller: setpoint and process variable (°C), interval (s) -> heat demand (W)."""

    def step(self, setpoint_c: float, pv_c: float, dt_s: float, applied_w: float | None) -> float: ...

    def restart(self, output_w: float, pv_c: float) -> None:
        """Forget the history; the next step starts from ``output_w`` (W) at measurement ``pv_c`` (°C)."""


class PidStep:
    """`PidController` behind the `Controller` protocol."""

    def __init__(self, pid: PidController) -> None:
        self.pid = pid

    def step(self, setpoint_c: float, pv_c: float, dt_s: float, applied_w: float | None) -> float:
        return self.pid.update(setpoint_c, pv_c, dt_s, applied_w)

    def restart(self, output_w: float, pv_c: float) -> None:
        self.pid.reset(output_w=output_w, pv_c=pv_c)


class HysteresisStep:
    """`HysteresisThermostat` behind the `Controller` protocol."""

    def __init__(self, thermostat: HysteresisThermostat) -> None:
        self.thermostat = thermostat

    def step(self, setpoint_c: float, pv_c: float, dt_s: float, applied_w: float | None) -> float:
        return self.thermostat.update(setpoint_c, pv_c)

    def restart(self, output_w: float, pv_c: float) -> None:
        self.thermostat.reset(on=output_w > self.thermostat.params.off_w)


def build_controller(cfg: ThermostatConfig, max_w: float) -> Controller:
    """The controller ``cfg.algorithm`` names, with output range [output_min_w, max_w]."""
    if cfg.algorithm == "hysteresis":
        return HysteresisStep(HysteresisThermostat(on_w=max_w, off_w=cfg.output_min_w,
                                                   differential_k=cfg.hysteresis_differential_k))
    p = cfg.pid
    ramp = None if p.setpoint_ramp_k_per_h is None else p.setpoint_ramp_k_per_h / 3600.0
    gains = PidGains(p.kp_w_per_k, p.ti_s, p.td_s, p.derivative_filter_n, p.setpoint_weight,
                     setpoint_ramp_k_per_s=ramp, setpoint_filter_s=p.setpoint_filter_s)
    return PidStep(PidController(gains, cfg.output_min_w, max_w))


def build_schedule(cfg: ThermostatConfig) -> WeeklySchedule:
    """The weekly schedule of ``cfg`` (the built-in home schedule when none is configured)."""
    s = cfg.setpoints
    setpoints = ModeSetpoints(comfort_c=s.comfort_c, eco_c=s.eco_c, frost_c=s.frost_c)
    if cfg.schedule is None:
        return default_home(setpoints)
    return WeeklySchedule.parse([r.model_dump() for r in cfg.schedule], setpoints)


def build_quiet(cfg: ThermostatConfig) -> QuietHours | None:
    """The quiet hours ``cfg.quiet`` configures, or None when disabled."""
    q = cfg.quiet
    if not q.enabled:
        return None
    return QuietHours(parse_hhmm(q.start), parse_hhmm(q.end), q.max_w, needs_presence=q.presence_channel is not None)


def build_window(cfg: ThermostatConfig) -> WindowDetector | None:
    """The open-window detector ``cfg.window`` configures, or None when disabled."""
    w = cfg.window
    if not w.enabled:
        return None
    return WindowDetector(WindowSettings(drop_k=w.drop_k, drop_window_s=w.drop_window_s, recover_k=w.recover_k,
                                         max_pause_s=w.max_pause_s))


def build_predictor(cfg: ThermostatConfig, max_w: float, quiet: QuietHours | None = None) -> Predictor | None:
    """The predictive layer ``cfg.predict`` asks for, or None when disabled."""
    p = cfg.predict
    if not p.enabled:
        return None
    settings = PredictSettings(order=p.order, forgetting=p.forgetting, max_fit_k=p.max_fit_k,
                               min_slots=p.min_slots, max_lead_s=p.max_lead_s,
                               arrival_tolerance_k=p.arrival_tolerance_k, stop_margin_k=p.stop_margin_k,
                               stop_w=p.stop_w,
                               coast_margin_k=p.coast_margin_k,
                               optimal_stop=p.optimal_stop, assumed_outdoor_c=p.assumed_outdoor_c,
                               precharge_band_k=p.precharge_band_k, boost_hysteresis_s=p.boost_hysteresis_s,
                               precharge_s=p.precharge_s, max_sprint_s=p.max_sprint_s)
    return Predictor(settings, cfg.output_min_w, max_w, power_cap=None if quiet is None else quiet.cap_at)


class Thermostat:
    """The control-loop component; `step` is one period, `run` repeats it on the loop clock."""

    def __init__(self, cfg: ThermostatConfig, power: PowerManager, hub: SensorHub, safety: SafetyLayer,
                 clock: Clock, notifier: Notifier | None = None, controller: Controller | None = None) -> None:
        self.cfg = cfg
        self.power, self.hub, self.safety, self.clock = power, hub, safety, clock
        self.notifier = notifier or Notifier({})
        self.max_w = cfg.output_max_w or power.cfg.max_w
        self.controller = controller or build_controller(cfg, self.max_w)
        self.schedule = build_schedule(cfg)
        self.quiet = build_quiet(cfg)
        self.quiet_reason: str | None = None
        self.window = build_window(cfg)
        self.predictor = build_predictor(cfg, self.max_w, self.quiet)
        d = cfg.demand_response
        self.dr = DemandResponse(DrSettings(d.preheat_s, d.band_k, cfg.setpoints.frost_c, d.recovery_s)) \
            if d.enabled else None
        self.setpoint_c = math.nan  # the scheduled (or override, or fixed-mode) setpoint
        self.target_c = math.nan  # what the controller follows: the setpoint shaped by the predictor
        self.mode = Mode.ECO
        self.pv_c = math.nan
        self.demand_w = cfg.output_min_w
        self.limit_reason = "starting"
        self._logged_kind = "starting"  # kind of the last reason logged: each change is logged once
        self._first_step_s: float | None = None
        self._last_t_s: float | None = None
        self._summer_floor_on = True
        self.step_times_s: deque[float] = deque(maxlen=20)
        self.override_c: float | None = None
        self.override_until_s: float | None = None
        self.mode_setting = cfg.mode  # the configured mode; the platform may change it at run time
        self.paused: str | None = None  # set while something else (autotune) drives the power
        self.room_channel: str | None = None  # the room channel the last step used
        self.skipped_steps = 0  # steps at which the clock had not advanced (dt <= 0)
        self.gaps = 0  # restarts after a gap of more than GAP_PERIODS periods
        self._restart_pending = False
        self._held_w: float | None = None  # the power the predictor held at the last step (None: the controller's)

    def set_override(self, setpoint_c: float, duration_s: float | None) -> None:
        """Hold ``setpoint_c`` (°C) instead of the schedule, for ``duration_s`` (None: until cleared)."""
        if not (5.0 <= setpoint_c <= 30.0):
            raise ValueError(f"setpoint {setpoint_c} °C outside 5..30 °C")
        self.override_c = setpoint_c
        self.override_until_s = None if duration_s is None else self.clock.monotonic() + duration_s

    def clear_override(self) -> None:
        """Back to the mode and schedule."""
        self.override_c = self.override_until_s = None

    def setpoint_now_c(self) -> float:
        """The setpoint in force at this instant (°C; NaN in mode off): the override, the fixed mode or the
        schedule as of now, not as of the last control step (an override cleared since counts at once)."""
        return self._setpoint()[1]

    def mode_now(self) -> tuple[str, float]:
        """(mode, setpoint °C) in force at this instant, as `setpoint_now_c` finds them."""
        return self._setpoint()

    def _setpoint(self) -> tuple[str, float]:
        if self.mode_setting == "off":
            return "off", math.nan
        if self.override_c is not None:
            if self.override_until_s is None or self.clock.monotonic() < self.override_until_s:
                return "override", self.override_c
            self.clear_override()
        auto = self.mode_setting == "auto"
        mode = self.schedule.mode_at(self.clock.now()) if auto else Mode(self.mode_setting)
        self.mode = mode
        return mode.value, self.schedule.setpoints.for_mode(mode)

    def step(self) -> float:
        """One control period; returns the heat demand (W) decided."""
        t_s = self.clock.monotonic()
        self.step_times_s.append(t_s)
        if self.paused is not None:  # autotune drives power and heartbeats; the loop only records why
            self.limit_reason = self.paused
            self._last_t_s = t_s
            self.notifier.notify("WATCHDOG=1")
            return self.demand_w
        dt_s = self._interval(t_s)
        if dt_s is None:  # the clock did not advance: nothing new to decide, the last output stands
            self.safety.heartbeat(t_s)
            self.notifier.notify("WATCHDOG=1")
            return self.demand_w
        self.power.measure(t_s)
        mode, self.setpoint_c = self._setpoint()
        choice = self.hub.best(self.cfg.room_channels, self.cfg.stale_after_s)
        self._follow_channel(choice)
        demand_w, reason = self.cfg.output_min_w, "mode off"
        if mode != "off" and choice.reading is None:
            reason = f"no valid room temperature: {choice.reason}"
        elif mode != "off" and choice.reading is not None:
            self.pv_c = choice.reading.value
            self.target_c = self._predict(mode)
            applied = self.cfg.output_min_w if self.safety.forced else None
            if self._restart_pending:
                self.controller.restart(self.cfg.output_min_w if self.safety.forced else self.demand_w, self.pv_c)
                self._restart_pending = False
            # An open window, an optimal start or stop act at full effect, not through the PID (which moves
            # on a setpoint change over its integral time), and so do the quiet-hours and demand-response
            # limits; the controller is then told what was applied instead of its output, so its integral
            # tracks (bumpless).
            dr_cap_w, dr_floor_w, dr_reason = self._demand_response()
            hold_w, hold_reason = self._hold(t_s)
            if hold_w is None and dr_reason.endswith("pre-heating") and self.pv_c < self.target_c - 0.1:
                hold_w, hold_reason = self.max_w, dr_reason  # the pre-heat at full effect
            if applied is None and self._held_w is not None:
                applied = self._held_w
            out_w = self.controller.step(self.target_c, self.pv_c, dt_s, applied)
            demand_w = self._summer(out_w if hold_w is None else hold_w)
            reason = hold_reason or ("at maximum power" if demand_w >= self.max_w else "setpoint")
            cap_w, self.quiet_reason = self._quiet_cap()
            capped = False
            if cap_w is not None and demand_w > cap_w:
                demand_w, reason, capped = cap_w, self.quiet_reason or "quiet hours", True
            if dr_cap_w is not None and demand_w > dr_cap_w:
                demand_w, reason, capped = dr_cap_w, dr_reason, True
            if dr_floor_w is not None and demand_w < dr_floor_w and not (cap_w is not None and dr_floor_w > cap_w):
                demand_w, reason, capped = dr_floor_w, dr_reason, True
            self._held_w = demand_w if hold_w is not None or capped else None
        kind = "waiting" if choice.reading is None and mode != "off" and self._first_reading_due(t_s) else _kind(reason)
        if kind != self._logged_kind and kind == "waiting":  # start-up: the sensors have not read yet
            log.info("thermostat at minimum power", reason=reason)
        elif kind != self._logged_kind and kind in UNSAFE_INPUT:
            log.warning("thermostat at minimum power", reason=reason)
        self._logged_kind = kind
        self.demand_w, self.limit_reason = demand_w, reason
        if self.safety.forced:
            self.limit_reason = "safety: " + "; ".join(self.safety.conditions)
        else:
            self.power.set_demand(demand_w, t_s)
        self.safety.heartbeat(t_s)
        self.notifier.notify("WATCHDOG=1")
        return demand_w

    def _first_reading_due(self, t_s: float) -> bool:
        """True at start-up: no room channel has read yet and ``stale_after_s`` has not passed since the
        first control step (waiting for a sensor's first reading is normal then; later it is a fault)."""
        if self._first_step_s is None:
            self._first_step_s = t_s
        if t_s - self._first_step_s >= self.cfg.stale_after_s:
            return False
        return all(name not in self.hub.latest for name in self.cfg.room_channels)

    def _interval(self, t_s: float) -> float | None:
        """The interval (s) this step covers; None when the clock did not advance (the step is skipped and
        the last output kept). A gap of more than GAP_PERIODS periods marks the controller for a restart
        and counts as one period."""
        period_s = self.cfg.period_s
        if self._last_t_s is None:
            self._last_t_s = t_s
            return period_s
        dt_s = t_s - self._last_t_s
        if dt_s <= 0:
            self.skipped_steps += 1
            if self.skipped_steps == 1:
                log.warning("control step skipped: the clock did not advance; keeping the last output "
                            "(further ones are counted in status)", dt_s=dt_s, demand_w=round(self.demand_w, 1))
            return None
        self._last_t_s = t_s
        if dt_s > GAP_PERIODS * period_s:
            self.gaps += 1
            self._restart_pending = True
            log.warning("control gap: restarting the controller from the current output", gap_s=round(dt_s, 1),
                        period_s=period_s, output_w=round(self.demand_w, 1))
            return period_s
        return dt_s

    def _follow_channel(self, choice: Choice) -> None:
        """Log a change of the room channel in use, with the reason."""
        channel = choice.reading.channel if choice.reading is not None else None
        previous, self.room_channel = self.room_channel, channel
        if channel == previous:
            return
        if self.window is not None:
            self.window.forget()  # another sensor's level is not a fall of the room
        if channel is None:
            log.warning("room channel lost", previous=previous, reason=choice.reason)
        elif previous is None:
            log.info("room channel in use", channel=channel,
                     reason="; ".join(choice.skipped + choice.notes) or "first usable reading")
        else:
            about_previous = [r for r in choice.skipped + choice.notes if r.startswith(previous)]
            preferred = self.cfg.room_channels
            back = channel in preferred and previous in preferred and \
                preferred.index(channel) < preferred.index(previous)
            why = "; ".join(about_previous) or (f"{channel} is preferred and usable again" if back else
                                                "redundancy vote")
            log.warning("room channel switched", previous=previous, channel=channel, reason=why)

    def _predict(self, mode: str) -> float:
        """Feed the predictor this period's room temperature and power; the target it shapes (°C) in auto
        mode, the setpoint itself otherwise (override, fixed mode, no predictor)."""
        if self.predictor is None:
            return self.setpoint_c
        measured = self.power.measured_w
        power_w = measured if measured is not None and math.isfinite(measured) else self.demand_w
        now = self.clock.now()
        self.predictor.observe(now, self.pv_c, power_w)
        auto = self.mode_setting == "auto" and mode not in ("override", "off")
        return self.predictor.target(now, self.setpoint_c, self.schedule if auto else None)

    def _channel_on(self, name: str | None) -> bool | None:
        """Whether channel ``name`` reads > 0.5 (a contact open, someone present); None without a fresh reading
        or with no channel configured."""
        if name is None:
            return None
        reading = self.hub.best([name], self.cfg.stale_after_s).reading
        return None if reading is None else reading.value > 0.5

    def _hold(self, t_s: float) -> tuple[float | None, str | None]:
        """A power (W) decided without the controller, and why: an open window (minimum power, or full power
        below frost protection), else the predictor's optimal start or stop; (None, None) otherwise."""
        if self.window is not None:
            contact = self._channel_on(self.cfg.window.contact_channel)
            expected_k = 0.0
            if self.predictor is not None:  # the fall the room model explains at the power applied
                expected_k = self.predictor.expected_fall_k(self.clock.now(), self.demand_w,
                                                            self.cfg.window.drop_window_s)
            if self.window.update(t_s, self.pv_c, contact, expected_k):
                frost_c = self.schedule.setpoints.frost_c
                return (self.cfg.output_min_w if self.pv_c >= frost_c else self.max_w,
                        f"open window: {self.window.reason}")
        if self.predictor is not None and self.predictor.hold_w is not None:
            return self.predictor.hold_w, f"predictive: {self.predictor.reason}"
        return None, None

    def _demand_response(self) -> tuple[float | None, float | None, str]:
        """Apply an accepted demand-response request: raise ``target_c`` for a pre-heat; (cap W, floor W,
        reason) during its window; record the outcome of the ones that ended."""
        if self.dr is None:
            return None, None, ""
        now = self.clock.now()
        measured = self.power.measured_w
        power_w = measured if measured is not None and math.isfinite(measured) else self.demand_w
        for outcome in self.dr.observe(now, self.setpoint_c, self.pv_c, power_w):
            log.info("demand response over", **outcome.as_dict())
        target_c, cap_w, floor_w, reason = self.dr.shape(now, self.setpoint_c, self.pv_c,
                                                         self.schedule.setpoints.frost_c)
        if target_c > self.setpoint_c:  # a pre-heat raises the target (an optimal stop's lower one stays)
            self.target_c = max(self.target_c, target_c)
        return cap_w, floor_w, reason

    def expect_demand_response(self, request: DrRequest) -> Expectation:
        """What the room model expects of ``request`` (see DemandResponse); no model: nothing promised."""
        if self.dr is None:
            raise ValueError("demand response is disabled on this heater")
        if self.predictor is None or request.kind != "shed":
            return Expectation(None, None)
        got = self.predictor.expect_shed(self.clock.now(), request.start, request.end, request.limit_w,
                                         self.schedule.setpoint_at, self.dr.s.band_k, self.dr.s.preheat_s,
                                         self.dr.s.after_s)
        if got is None:
            return Expectation(None, None)
        discomfort_kh, lowest_c = got
        return Expectation(discomfort_kh, lowest_c, below_frost=lowest_c < self.schedule.setpoints.frost_c)

    def request_demand_response(self, request: DrRequest, dry_run: bool = False) -> Expectation:
        """Check ``request`` and, unless ``dry_run``, keep it. Raises ValueError when refused: disabled, the
        window already over, or the model room falling below frost protection."""
        if request.end <= self.clock.now():
            raise ValueError("the window is already over")
        expected = self.expect_demand_response(request)
        if expected.below_frost:
            raise ValueError(f"the room would fall to {expected.lowest_c:.1f} °C, below frost protection "
                             f"({self.schedule.setpoints.frost_c:g} °C)")
        if not dry_run and self.dr is not None:
            self.dr.accept(request, expected)
            log.info("demand response accepted", id=request.request_id, kind=request.kind, limit_w=request.limit_w,
                     start=request.start.isoformat(), end=request.end.isoformat(),
                     expected_discomfort_kh=expected.discomfort_kh)
        return expected

    def _quiet_cap(self) -> tuple[float | None, str | None]:
        """The quiet-hours cap (W) now and its reason; (None, reason or None) when it does not apply."""
        if self.quiet is None:
            return None, None
        present = self._channel_on(self.cfg.quiet.presence_channel)
        return self.quiet.cap(self.clock.now(), present)

    def _summer(self, demand_w: float) -> float:
        summer = self.cfg.summer
        if not summer.enabled:
            return demand_w
        if self.pv_c >= summer.comfort_max_c:
            self._summer_floor_on = False
        elif self.pv_c < summer.comfort_max_c - SUMMER_HYSTERESIS_K:
            self._summer_floor_on = True
        return max(demand_w, summer.floor_w) if self._summer_floor_on else self.cfg.output_min_w

    async def run(self) -> None:
        """Step every ``period_s`` until cancelled; the period is kept on the loop clock, not drifting.
        Slots missed (a suspend, a stalled loop) are skipped, not run back to back at one clock time."""
        loop = asyncio.get_running_loop()
        next_s = loop.time()
        while True:
            self.step()
            next_s += self.cfg.period_s
            now_s = loop.time()
            if next_s < now_s:
                next_s = now_s + self.cfg.period_s
            await asyncio.sleep(max(0.0, next_s - now_s))

    def status(self) -> dict:
        """Plain-JSON status of the loop; while an override holds, ``override_remaining_s`` (s) and
        ``override_until`` (local time, ISO to the minute), both None when it holds until cleared."""
        mode = "off" if self.mode_setting == "off" else (
            "override" if self.override_c is not None else self.mode.value)
        status = {"mode": mode, "setpoint_c": self.setpoint_c, "override_c": self.override_c,
                  "room_c": self.pv_c, "demand_w": round(self.demand_w, 1), "limit_reason": self.limit_reason,
                  "algorithm": self.cfg.algorithm, "room_channel": self.room_channel,
                  "skipped_steps": self.skipped_steps, "gaps": self.gaps}
        if self.override_c is not None:  # when it ends: time left (s) and the local clock time, None: until cleared
            until = self.override_until_s
            left_s = None if until is None else max(0.0, until - self.clock.monotonic())
            status["override_remaining_s"] = None if left_s is None else round(left_s, 1)
            status["override_until"] = None if left_s is None else (
                self.clock.now() + timedelta(seconds=left_s)).isoformat(timespec="minutes")
        if self.window is not None:
            status["window"] = self.window.status()
        if self.dr is not None and (self.dr.active or self.dr.outcomes):
            status["demand_response"] = self.dr.status()
        if self.quiet is not None:
            status["quiet"] = {"reason": self.quiet_reason, "max_w": self.quiet.cap_w}
        if self.predictor is not None:
            status["target_c"] = None if math.isnan(self.target_c) else round(self.target_c, 2)
            status["predict"] = self.predictor.status()
        return status
