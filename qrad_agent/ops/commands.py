"""The one command surface: every change to a running heater, whoever asks.

The local API (`qrad_agent.ops.handlers`, technicians through `qrad-agent ...`) and the platform's MQTT
commands (`qrad_agent.platform.AgentCommands`) both call `Commands`; neither changes a component itself.
So a setpoint, a mode, a schedule (one grammar: `qrad_agent.control.schedule`), an override, an alarm reset,
an autotune, a fire test, identify and the jobs' changes are checked the same way and refused with the same
words, whichever surface they came through. A refusal is `Refused` (``usage`` when the request itself is
wrong). No method here writes power: the thermostat and the safety layer ask the power authority, which
refuses anything above the floor while a safety condition holds or after stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

import structlog

from qrad_agent.control.schedule import WeeklySchedule
from qrad_agent.control.thermostat import Thermostat
from qrad_agent.errors import Refused, ResetRefused
from qrad_agent.fire_response import FireResponse
from qrad_agent.ops.field import FireTest, Identify
from qrad_agent.ops.tuning import Tuner
from qrad_agent.safety import SafetyLayer

if TYPE_CHECKING:
    from qrad_agent.jobs.carbon import CarbonAccountant
    from qrad_agent.jobs.runner import JobRunner

log = structlog.get_logger(component="commands")

ModeSetting = Literal["auto", "comfort", "eco", "frost", "off"]
MODES: tuple[str, ...] = get_args(ModeSetting)
"""The thermostat's mode settings: "auto" follows the schedule, the others hold that mode."""


class Commands:
    """Every change, on narrow parts: ``thermostat`` (setpoints, mode, schedule, override), ``safety`` and
    ``fire`` (alarm resets), ``tuner``, ``fire_test``, ``identify``, ``jobs`` (None: jobs disabled),
    ``carbon`` (None: no energy accounting) and ``now`` (local wall-clock time, for weather points)."""

    def __init__(self, thermostat: Thermostat, safety: SafetyLayer, fire: FireResponse, tuner: Tuner,
                 fire_test: FireTest, identify: Identify, jobs: JobRunner | None,
                 carbon: Callable[[], CarbonAccountant | None], now: Callable[[], datetime]) -> None:
        self.thermostat = thermostat
        self.safety = safety
        self.fire = fire
        self.tuner = tuner
        self.fire_test = fire_test
        self.identify_line = identify
        self.jobs = jobs
        self.carbon = carbon
        self.now = now

    # -- the thermostat ------------------------------------------------------------------------------------

    def set_override(self, setpoint_c: Any, duration_s: Any = None, by: str = "local") -> None:
        """Hold ``setpoint_c`` (°C, 5..30) instead of the schedule for ``duration_s`` (s, > 0; None: until
        cleared). Raises Refused (usage) for a value out of range."""
        try:
            setpoint = float(setpoint_c)
            duration = None if duration_s is None else float(duration_s)
        except (TypeError, ValueError) as exc:
            raise Refused(f"set_override: {exc}", usage=True) from exc
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise Refused(f"set_override: the duration must be > 0 (got {duration:g} s); omit it to hold "
                          "until cleared", usage=True)
        try:
            self.thermostat.set_override(setpoint, duration)
        except ValueError as exc:
            raise Refused(f"set_override: {exc}", usage=True) from exc
        log.info("override set", setpoint_c=setpoint, duration_s=duration, by=by)

    def clear_override(self, by: str = "local") -> None:
        """Back to the mode and schedule."""
        self.thermostat.clear_override()
        log.info("override cleared", by=by)

    def set_mode(self, mode: str, by: str = "local") -> None:
        """``mode``: one of MODES. Raises Refused (usage) for another."""
        if mode not in MODES:
            raise Refused(f"set_mode: unknown mode {mode!r}; modes are {', '.join(MODES)}", usage=True)
        self.thermostat.mode_setting = mode  # type: ignore[assignment]  # checked against MODES above
        log.info("mode changed", mode=mode, by=by)

    def set_setpoint(self, mode: str, setpoint_c: float, by: str = "local") -> None:
        """The setpoint (°C) of schedule mode ``mode`` (comfort, eco, frost), keeping comfort >= eco >= frost.
        Raises Refused."""
        schedule = self.thermostat.schedule
        field = f"{mode}_c"
        if mode not in ("comfort", "eco", "frost"):
            raise Refused(f"set_setpoint: no mode {mode!r}; modes with a setpoint are comfort, eco, frost",
                          usage=True)
        try:
            schedule.setpoints = replace(schedule.setpoints, **{field: float(setpoint_c)})
        except (TypeError, ValueError) as exc:
            raise Refused(f"set_setpoint: {exc}", usage=True) from exc
        log.info("setpoint changed", mode=mode, setpoint_c=setpoint_c, by=by)

    def set_schedule(self, rules: Sequence[Mapping[str, Any]], by: str = "local") -> int:
        """Replace the weekly schedule by ``rules`` (the grammar of `WeeklySchedule.parse`, the same as the
        config file's). Returns the number of rules. Raises Refused naming the bad rule and field."""
        try:
            new = WeeklySchedule.parse(rules, self.thermostat.schedule.setpoints)
        except ValueError as exc:
            raise Refused(f"set_schedule: {exc}", usage=True) from exc
        self.thermostat.schedule = new
        log.info("schedule changed", rules=len(rules), by=by)
        return len(rules)

    # -- safety ----------------------------------------------------------------------------------------------

    def reset_alarm(self, code: str, by: str) -> None:
        """End the latched condition ``code`` ("fire_alarm", or one of the safety layer's LATCHED) once its
        cause is gone. Raises Refused naming what still holds, or what is latched when ``code`` is not."""
        if code == "fire_alarm":
            if self.fire.reset(by):
                return
        elif code in self.safety.LATCHED and code in self.safety.conditions:
            try:
                reset = self.safety.reset(code)
            except ResetRefused as exc:
                raise Refused(str(exc)) from exc
            if reset:
                log.warning("latched condition reset", condition=code, by=by)
                return
        latched = sorted(c for c in self.safety.conditions if c in self.safety.LATCHED)
        raise Refused(f"no latched alarm {code!r}; latched now: {', '.join(latched) or 'none'}"
                      + (f" (qrad-agent reset-alarm {latched[0]})" if latched else ""))

    # -- long operations (owned by the supervisor's ``operations`` component) -------------------------------

    def autotune(self, params: dict[str, Any]) -> dict[str, Any]:
        """Start, cancel, confirm or plan a step test (ops/tuning.py)."""
        return self.tuner.request(params)

    def start_fire_test(self, params: dict[str, Any]) -> dict[str, Any]:
        """The alarm path in test mode (ops/field.py)."""
        return self.fire_test.start(params)

    def identify(self, params: dict[str, Any]) -> dict[str, Any]:
        """Blink the identify line (ops/field.py)."""
        return self.identify_line.start(params)

    # -- jobs --------------------------------------------------------------------------------------------

    def _jobs(self) -> JobRunner:
        if self.jobs is None:
            raise Refused("jobs are disabled on this heater ([jobs] enabled = false)")
        return self.jobs

    def cancel_job(self, job_id: str) -> None:
        """Cancel a running or queued job. Raises Refused for an unknown one."""
        if not self._jobs().cancel(job_id):
            raise Refused(f"no running or queued job {job_id}")

    def ack_job(self, job_id: str) -> None:
        """The platform has the result of ``job_id``: its files may go. Raises Refused for an unknown one."""
        if not self._jobs().ack(job_id):
            raise Refused(f"no finished job {job_id}")
        log.info("job result acknowledged", job=job_id)

    def prepare_update(self, release: bool = False) -> int:
        """An update is coming (update/updater.py): start no new job and ask the checkpointable ones to save
        and stop; ``release``: the update was refused, start jobs again. Returns the busy job slots."""
        if self.jobs is None:
            return 0
        return self.jobs.hold_for_update(not release)

    def set_grid_intensity(self, g_per_kwh: float, by: str = "platform") -> None:
        """The grid's carbon intensity (gCO2e/kWh) for the carbon facts. Raises Refused."""
        carbon = self.carbon()
        if carbon is None:
            raise Refused("jobs are disabled on this heater: no energy or carbon accounting")
        try:
            carbon.set_intensity(g_per_kwh, by)
        except ValueError as exc:
            raise Refused(str(exc), usage=True) from exc

    # -- the room model ----------------------------------------------------------------------------------

    def set_weather(self, points: list[tuple[float, float, float]]) -> int:
        """Outdoor forecast points (unix s, °C, W/m²) for the room model (local calendar time). Returns the
        points kept. Raises Refused when predictive heating is off or the points are bad."""
        predictor = self.thermostat.predictor
        if predictor is None:
            raise Refused("predictive heating is disabled on this heater")
        try:
            kept = predictor.set_weather([(datetime.fromtimestamp(t), c, g) for t, c, g in points], self.now())
        except (ValueError, OverflowError, OSError) as exc:
            raise Refused(f"weather refused: {exc}") from exc
        log.info("weather forecast received", points=kept)
        return int(kept)

    def demand_response(self, request_id: str, start: float, end: float, kind: str, limit_w: float,
                        dry_run: bool = False, by: str = "platform") -> dict[str, Any]:
        """A demand-response request (qrad_agent/control/demand_response.py): from ``start`` to ``end`` (unix
        s, at most 24 h) at most (``shed``) or at least (``absorb``) ``limit_w`` W; ``dry_run`` only answers.
        Returns whether it was kept and what the room model expects. Raises Refused: a bad window, demand
        response disabled, or a shed that takes the model room below frost protection."""
        from qrad_agent.control.demand_response import DrRequest

        if not 0 < end - start <= 86400.0:
            raise Refused("demand_response: the window must end after it starts, within 24 h", usage=True)
        try:
            request = DrRequest(request_id, datetime.fromtimestamp(start), datetime.fromtimestamp(end),
                                "absorb" if kind == "absorb" else "shed", limit_w)
            expected = self.thermostat.request_demand_response(request, dry_run=dry_run)
        except (ValueError, OverflowError, OSError) as exc:
            raise Refused(f"demand response refused: {exc}") from exc
        log.info("demand response answered", id=request_id, kept=not dry_run, by=by)
        return {"accepted": not dry_run, "expected_discomfort_kh": expected.discomfort_kh,
                "expected_lowest_c": None if expected.lowest_c is None else round(expected.lowest_c, 2)}
