"""The supervisor: builds the components from the config and runs them as named tasks on one loop.

Components now: ``safety`` (safety layer), ``sensors`` (sensor hub), ``control`` (thermostat). Each runs
until cancelled; one that returns or raises takes the agent down with `ComponentDied` (the CLI exits
non-zero and systemd restarts the service), never a silent hang. Whatever ends the run (a stop request, a
dead component, cancellation), leaving `run` puts compute power at its minimum and flushes the state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from qrad_agent.api.server import ApiServer, Handler
from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig
from qrad_agent.control.thermostat import Controller, PidStep, Thermostat
from qrad_agent.errors import ComponentDied
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sdnotify import Notifier
from qrad_agent.sensing.hub import SensorHub
from qrad_drivers.base import DriverContext
from qrad_drivers.registry import build_driver
from qrad_agent.state import load_state, save_state

log = structlog.get_logger(component="supervisor")

STOP_TIMEOUT_S = 3.0
"""Longest wait for the components to finish cancelling on stop (systemd's default stop timeout is 90 s;
the issue's budget is 5 s for the whole stop)."""
STATE_MAX_AGE_S = 3600.0
"""Controller state older than this (wall clock, s) is not restored: the room has changed since."""


class Agent:
    """One heater's agent: power manager, sensor hub, safety layer and thermostat, supervised."""

    def __init__(self, cfg: AgentConfig, clock: Clock | None = None, notifier: Notifier | None = None,
                 controller: Controller | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or Clock()
        self.notifier = notifier or Notifier()
        self.power = PowerManager(cfg.power)
        context = DriverContext(sysfs_root=cfg.power.sysfs_root)
        self.hub = SensorHub([build_driver(s, context) for s in cfg.sensors], self.clock, cfg.sensor_hub)
        self.safety = SafetyLayer(cfg.safety, self.power, self.clock, cfg.power.heartbeat_timeout_s)
        self.thermostat = Thermostat(cfg.thermostat, self.power, self.hub, self.safety, self.clock,
                                     self.notifier, controller)
        self.state_path = cfg.state_dir / "state.json"

    def components(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Name -> coroutine function of every supervised component."""
        api = ApiServer(self.cfg.api.socket_path, self.api_handlers(), self.cfg.api.group)
        return {"safety": self.safety.run, "sensors": self.hub.run, "control": self.thermostat.run,
                "api": api.run}

    def api_handlers(self) -> dict[str, Handler]:
        """Local API methods: read-only views for the technicians' group, changes for the privileged one."""
        from qrad_agent.ops import handlers

        return handlers.build(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Raises ComponentDied if a component ends or fails."""
        self.power.force_minimum("starting")
        self.started_at = (self.clock.monotonic(), time.time())
        self.restore_state()
        tasks = {asyncio.create_task(fn(), name=name): name for name, fn in self.components().items()}
        stopper = asyncio.create_task(stop.wait(), name="stop")
        self.notifier.notify("READY=1", "STATUS=running")
        log.info("agent running", components=sorted(tasks.values()), power_chain=self.power.chain_names())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper:
                    error = None if task.cancelled() else task.exception()
                    raise ComponentDied(tasks[task], error)
        finally:
            self.notifier.notify("STOPPING=1")
            await self._cancel([*tasks, stopper])
            self.power.force_minimum("agent stopped")
            self.save_state()
            log.info("agent stopped")

    async def _cancel(self, tasks: list[asyncio.Task]) -> None:
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            log.error("component did not stop in time", component=task.get_name())

    def extra_changes(self) -> dict[str, Any]:
        """Privileged API changes offered by optional components (jobs, fire, sync), name -> action(params)."""
        return {}

    def state(self) -> dict:
        """What survives a restart: controller state and the learned power curve."""
        state: dict = {"saved_at": time.time(), "power_curve": self.power.curve.state()}
        if isinstance(self.thermostat.controller, PidStep):
            state["pid"] = self.thermostat.controller.pid.state()
        t = self.thermostat
        if t.override_c is not None:
            remaining = None if t.override_until_s is None else max(0.0, t.override_until_s - self.clock.monotonic())
            state["override"] = {"setpoint_c": t.override_c, "remaining_s": remaining}
        return state

    def save_state(self) -> None:
        """Flush the state file; a failure is logged, never raised (stopping must go on)."""
        try:
            save_state(self.state_path, self.state())
        except OSError as exc:
            log.error("state not saved", path=str(self.state_path), error=str(exc))

    def restore_state(self) -> None:
        """Load the learned power curve, and the PID state if it is recent enough."""
        state = load_state(self.state_path)
        if not state:
            return
        self.power.curve.restore(state.get("power_curve", {}))
        override = state.get("override")
        if isinstance(override, dict) and isinstance(override.get("setpoint_c"), (int, float)):
            try:
                self.thermostat.set_override(float(override["setpoint_c"]), override.get("remaining_s"))
            except ValueError as exc:
                log.warning("override not restored", error=str(exc))
        age_s = time.time() - float(state.get("saved_at", 0))
        if "pid" in state and isinstance(self.thermostat.controller, PidStep) and age_s < STATE_MAX_AGE_S:
            try:
                self.thermostat.controller.pid.restore(state["pid"])
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("PID state ignored", error=str(exc))
        log.info("state restored", path=str(self.state_path), age_s=round(age_s))

    def status(self) -> dict:
        """Plain-JSON status of every component."""
        return {"device_id": self.cfg.device_id, "thermostat": self.thermostat.status(),
                "power": self.power.status(), "safety": self.safety.status(), "sensors": self.hub.status()}
