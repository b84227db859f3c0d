"""`qrad-agent autotune`: the step test runs in the background (it takes up to a few hours); the
technician asks for its progress and confirms the proposed gains, which are then applied (bumpless) and
persisted with the agent's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from qrad_agent.clock import Clock
from qrad_agent.control.autotune import AutotuneResult, autotune, hub_temperature, thermostat_plan
from qrad_agent.control.pid import PidGains
from qrad_agent.control.thermostat import PidStep, Thermostat
from qrad_agent.errors import Refused as ApiError
from qrad_agent.ops.operations import Operations
from qrad_agent.safety import SafetyLayer

log = structlog.get_logger(component="autotune")


class Tuner:
    """One autotune at a time, on ``thermostat``, run as the ``autotune`` operation of ``operations``;
    refused while ``safety`` holds power at its floor. ``on_gains(gains)`` applies confirmed gains and
    persists them (the agent's state)."""

    def __init__(self, thermostat: Thermostat, safety: SafetyLayer, clock: Clock, operations: Operations,
                 on_gains: Callable[[PidGains], None]) -> None:
        self.thermostat = thermostat
        self.safety = safety
        self.clock = clock
        self.operations = operations
        self.on_gains = on_gains
        self.task: asyncio.Task | None = None
        self.result: AutotuneResult | None = None
        self.phase = ""
        self.started_s: float | None = None
        self.max_duration_s: float | None = None
        self.cancelled = False

    def request(self, params: dict[str, Any]) -> dict[str, Any]:
        """``dry_run``: the plan only; ``confirm``: apply the last proposal; ``cancel``: stop the running
        test (the thermostat drives the power again); otherwise start a test. Raises ApiError."""
        thermostat = self.thermostat
        if params.get("confirm"):
            return self.confirm()
        if params.get("cancel"):
            return self.cancel()
        try:
            plan = thermostat_plan(thermostat)
        except ValueError as exc:
            raise ApiError(f"autotune: {exc}") from exc
        refused = self._refusal(plan)
        if params.get("dry_run"):  # with why a start would be refused now (None: it would start)
            return {"plan": plan.describe(), "max_duration_s": plan.max_duration_s, "refused_now": refused}
        if refused is not None:
            raise ApiError(refused)
        self.result, self.cancelled = None, False
        self.phase, self.started_s, self.max_duration_s = "starting", self.clock.monotonic(), plan.max_duration_s
        self.task = self.operations.start("autotune", self._run(plan))
        return {"started": True, "plan": plan.describe()}

    def _refusal(self, plan: Any) -> str | None:
        """Why a step test with ``plan`` may not start now, or None."""
        thermostat = self.thermostat
        if not isinstance(thermostat.controller, PidStep):
            return "autotune tunes the PID; this heater runs the hysteresis thermostat"
        if self.task is not None and not self.task.done():
            return "an autotune is already running (qrad-agent autotune --status, or --cancel)"
        if self.safety.forced:
            return ("autotune: the safety layer holds power at its minimum: "
                    + "; ".join(f"{c} ({r})" for c, r in self.safety.conditions.items()))
        cfg = thermostat.cfg
        room_c = hub_temperature(thermostat.hub, cfg.room_channels, cfg.stale_after_s)()
        if room_c is None:
            return "autotune: no valid room temperature now (qrad-agent status says why)"
        if abs(room_c - plan.center_c) > plan.band_k:
            return (f"autotune: the room is at {room_c:.2f} °C, outside the test's band "
                    f"{plan.center_c - plan.band_k:.1f}..{plan.center_c + plan.band_k:.1f} °C "
                    f"(setpoint {plan.center_c:.1f} ± {plan.band_k:g} K), where the test would abort at "
                    "once; start it when the thermostat has brought the room within the band")
        return None

    async def _run(self, plan: Any) -> None:
        thermostat = self.thermostat
        thermostat.paused = "autotune step test"
        try:
            self.result = await autotune(thermostat, plan, on_phase=self._on_phase)
            log.info("autotune finished", **self.result.status())
        except asyncio.CancelledError:
            log.warning("autotune cancelled; the thermostat drives the power again")
            raise
        finally:
            thermostat.paused = None
            self.phase = "cancelled" if self.cancelled else "done"

    def _on_phase(self, phase: str) -> None:
        self.phase = phase
        log.info("autotune phase", phase=phase)

    def cancel(self) -> dict[str, Any]:
        """Stop the running test: its own clean-up restores the demand held before it, and the thermostat
        (no longer paused) takes the power back at its next step."""
        running = self.task is not None and not self.task.done()
        if running:
            assert self.task is not None
            self.cancelled = True
            self.task.cancel()
            self.thermostat.paused = None  # at once, not only when the task has unwound
        return {"cancelled": running}

    def status(self) -> dict[str, Any]:
        """Running (phase "hold" / "step" / "fit", elapsed and longest duration, s), or the last result
        with the proposed gains."""
        running = self.task is not None and not self.task.done()
        elapsed = None if self.started_s is None else self.clock.monotonic() - self.started_s
        return {"running": running, "phase": self.phase or None, "elapsed_s": elapsed,
                "max_duration_s": self.max_duration_s,
                "result": None if self.result is None else self.result.status()}

    def confirm(self) -> dict[str, Any]:
        """Apply and persist the proposed gains."""
        if self.result is None or self.result.gains is None:
            raise ApiError("no autotune proposal to confirm")
        controller = self.thermostat.controller
        if not isinstance(controller, PidStep):
            raise ApiError("not running the PID")
        gains = self.result.gains
        controller.pid.set_gains(gains)  # bumpless (control/pid.py)
        self.on_gains(gains)
        log.warning("PID gains applied", kp_w_per_k=gains.kp_w_per_k, ti_s=gains.ti_s, td_s=gains.td_s)
        return {"applied": self.result.status()}
