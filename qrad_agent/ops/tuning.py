"""`qrad-agent autotune`: the step test runs in the background (it takes up to a few hours); the
technician asks for its progress and confirms the proposed gains, which are then applied (bumpless) and
persisted with the agent's state."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from qrad_agent.api.server import ApiError
from qrad_agent.control.autotune import AutotuneResult, autotune, thermostat_plan
from qrad_agent.control.pid import PidGains
from qrad_agent.control.thermostat import PidStep

log = structlog.get_logger(component="autotune")


class Tuner:
    """One autotune at a time, on the agent's thermostat."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.task: asyncio.Task | None = None
        self.result: AutotuneResult | None = None

    def request(self, params: dict[str, Any]) -> dict[str, Any]:
        """``dry_run``: the plan only; ``confirm``: apply the last proposal; otherwise start a test."""
        thermostat = self.agent.thermostat
        if params.get("confirm"):
            return self.confirm()
        try:
            plan = thermostat_plan(thermostat)
        except ValueError as exc:
            raise ApiError(f"autotune: {exc}") from exc
        if params.get("dry_run"):
            return {"plan": plan.describe(), "max_duration_s": plan.max_duration_s}
        if not isinstance(thermostat.controller, PidStep):
            raise ApiError("autotune tunes the PID; this heater runs the hysteresis thermostat")
        if self.task is not None and not self.task.done():
            raise ApiError("an autotune is already running")
        self.result = None
        self.task = asyncio.get_running_loop().create_task(self._run(plan), name="autotune")
        return {"started": True, "plan": plan.describe()}

    async def _run(self, plan: Any) -> None:
        thermostat = self.agent.thermostat
        thermostat.paused = "autotune step test"
        try:
            self.result = await autotune(thermostat, plan)
            log.info("autotune finished", **self.result.status())
        finally:
            thermostat.paused = None

    def status(self) -> dict[str, Any]:
        """Running, or the last result with the proposed gains."""
        running = self.task is not None and not self.task.done()
        return {"running": running, "result": None if self.result is None else self.result.status()}

    def confirm(self) -> dict[str, Any]:
        """Apply and persist the proposed gains."""
        if self.result is None or self.result.gains is None:
            raise ApiError("no autotune proposal to confirm")
        apply_gains(self.agent, self.result.gains)
        return {"applied": self.result.status()}


def apply_gains(agent: Any, gains: PidGains) -> None:
    """Bumpless switch to ``gains`` and save them in the state file (they survive a restart)."""
    controller = agent.thermostat.controller
    if not isinstance(controller, PidStep):
        raise ApiError("not running the PID")
    controller.pid.set_gains(gains)
    agent.tuned_gains = gains
    agent.save_state()
    log.warning("PID gains applied", kp_w_per_k=gains.kp_w_per_k, ti_s=gains.ti_s, td_s=gains.td_s)
