"""The supervisor: builds the components from the config and runs them as named tasks on one loop.

Components now: ``safety`` (safety layer), ``sensors`` (sensor hub), ``control`` (thermostat). Each runs
until cancelled; one that returns or raises takes the agent down with `ComponentDied` (the CLI exits
non-zero and systemd restarts the service), never a silent hang. Whatever ends the run (a stop request, a
dead component, cancellation), leaving `run` puts compute power at its minimum and flushes the state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

import qrad_agent
from qrad_agent.api.server import ApiServer, Handler
from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig
from qrad_agent.control.pid import PidGains
from qrad_agent.control.thermostat import Controller, PidStep, Thermostat
from qrad_agent.loopwatch import LoopWatch
from qrad_agent.ops.commands import Commands
from qrad_agent.ops.field import FireTest, Identify
from qrad_agent.ops.operations import Operations
from qrad_agent.ops.periodic import PeriodicSelftest
from qrad_agent.ops.tuning import Tuner
from qrad_agent.errors import ComponentDied
from qrad_agent.parts import HeaterParts, RunInfo
from qrad_agent.fire.detector import FireDetector
from qrad_agent.fire_response import FireResponse, thermal_check
from qrad_agent.power.authority import LATCH_FILE, SafetyState
from qrad_agent.power.follow import PowerFollowCheck
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sdnotify import Notifier
from qrad_agent.sensing.hub import SensorHub
from qrad_drivers.base import DriverContext
from qrad_drivers.registry import build_driver
from qrad_agent.state import load_state, save_state

if TYPE_CHECKING:  # jobs and sync (cryptography, paho, SQLite) load only when configured
    from qrad_agent.jobs.energy_monitor import EnergyMonitor
    from qrad_agent.jobs.runner import JobRunner
    from qrad_agent.sync.client import SyncClient

log = structlog.get_logger(component="supervisor")

STOP_TIMEOUT_S = 3.0
"""Longest wait for the components to finish cancelling on stop (systemd's default stop timeout is 90 s;
the issue's budget is 5 s for the whole stop)."""
STATE_SAVE_PERIOD_S = 60.0
"""The state (PID, learned curve, override) is also saved this often (s, loop clock), so a crash or a watchdog
kill loses at most this much; latched conditions are saved the moment they change (power/authority.py)."""
STATE_MAX_AGE_S = 3600.0
"""Controller state older than this (wall clock, s) is not restored: the room has changed since."""


class Agent:
    """One heater's agent: power manager, sensor hub, safety layer and thermostat, supervised."""

    def __init__(self, cfg: AgentConfig, clock: Clock | None = None, notifier: Notifier | None = None,
                 controller: Controller | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or Clock()
        self.notifier = notifier or Notifier()
        self.jobs: JobRunner | None = None
        jobs_heat = None
        if cfg.jobs.enabled:
            from qrad_agent.jobs.heat import JobsHeat
            from qrad_agent.jobs.runner import JobRunner as Runner

            self.jobs = Runner(cfg.jobs, device_id=cfg.device_id)
            self.jobs.setup()  # raises SandboxError / ActuatorError where jobs cannot run
            jobs_heat = JobsHeat(self.jobs)
        self.safety_state = SafetyState(cfg.power.heartbeat_timeout_s, self.clock.monotonic,
                                        cfg.state_dir / LATCH_FILE)
        self.energy: EnergyMonitor | None = None
        self.power = PowerManager(cfg.power, jobs=jobs_heat, safety_state=self.safety_state)
        if self.jobs is not None:
            from qrad_agent.jobs.energy_monitor import EnergyMonitor as Monitor

            hub_ref: list[SensorHub] = []  # the hub is built below; the monitor reads it only when running
            self.energy = Monitor(cfg.jobs, cfg.power, self.jobs,
                                  lambda: (self.thermostat.pv_c, self.thermostat.setpoint_c),
                                  lambda channel: _good_value(hub_ref[0], channel))
            self.jobs.on_job_end = self.energy.on_job_end
        context = DriverContext(sysfs_root=cfg.power.sysfs_root)
        self.hub = SensorHub([build_driver(s, context) for s in cfg.sensors], self.clock, cfg.sensor_hub,
                             cfg.thermostat.room_channels)
        if self.energy is not None:
            hub_ref.append(self.hub)
        fans = [c for c in cfg.safety.fan_channels if c in self.hub.specs]
        self.safety = SafetyLayer(cfg.safety, self.power, self.clock, cfg.power.heartbeat_timeout_s,
                                  fans=fan_readings(self.hub, fans, self.clock) if fans else None)
        self.thermostat = Thermostat(cfg.thermostat, self.power, self.hub, self.safety, self.clock,
                                     self.notifier, controller)
        self.state_path = cfg.state_dir / "state.json"
        self.run_info = RunInfo()
        self.operations = Operations()
        self.tuner = Tuner(self.thermostat, self.safety, self.clock, self.operations, self._gains_confirmed)
        self.tuned_gains: PidGains | None = None
        self.sync: SyncClient | None = None
        self.fire_response = FireResponse(self.safety, self.save_state, lambda: self.sync,
                                          self._reset_fire_detector)
        self.fire_test = FireTest(self.safety, self.power, cfg.safety.alarm_gpio_line, lambda: self.sync,
                                  self.operations)
        self.commands = Commands(self.thermostat, self.safety, self.fire_response, self.tuner, self.fire_test,
                                 Identify(cfg.power.sysfs_root, cfg.safety.identify_gpio_line, self.operations),
                                 self.jobs, lambda: None if self.energy is None else self.energy.carbon,
                                 self.clock.now)
        if cfg.sync is not None:
            self.sync = self._build_sync_client(cfg)
        self.fire: FireDetector | None = None
        self.deadman: Any = None  # the launcher's dead-man beat (jobs through a launcher service only)
        self.parts = HeaterParts(cfg, self.clock, self.hub, self.power, self.safety, self.thermostat, self.jobs,
                                 self.energy, self.run_info)
        self.periodic_selftest = PeriodicSelftest(self.parts)
        self.loopwatch: LoopWatch | None = None  # the daemon watches its loop (cli); virtual-time runs do not
        if cfg.fire.enabled:
            fire_cfg = cfg.fire if cfg.fire.room_channels else cfg.fire.model_copy(
                update={"room_channels": list(cfg.thermostat.room_channels)})
            self.fire = FireDetector(fire_cfg, self.hub, self._audio_queue, lambda: self.power.measured_w,
                                     self.clock, self.fire_response.on_alarm)
        mains = cfg.power.mains_power_channel
        mains_w = channel_value(self.hub, mains, self.clock) if mains and mains in self.hub.specs else None
        self.power.mains_w = mains_w
        self.safety.checks.append(PowerFollowCheck(self.power, mains_w, cfg.power.follow_margin_w,
                                                   cfg.power.follow_grace_s))
        if cfg.safety.surface_channel and cfg.safety.surface_channel in self.hub.specs:
            self.safety.checks.append(thermal_check(cfg.fire.thermal, cfg.safety.surface_channel,
                                                    list(cfg.thermostat.room_channels),
                                                    cfg.thermostat.stale_after_s, self.hub, self.power))

    def _reset_fire_detector(self, who: str) -> None:
        if self.fire is not None:
            self.fire.reset(True, who=who)

    def _audio_queue(self):
        """The microphone stream for fire detection: the first audio device's subscription, if any."""
        audio = next((d for d in self.hub.drivers.values() if d.type_name == "audio"), None)
        return None if audio is None else audio.subscribe()

    def _build_sync_client(self, cfg: AgentConfig) -> SyncClient:
        """The sync client, whose platform commands go to the commands surface (built before it)."""
        from qrad_agent.platform import AgentCommands
        from qrad_agent.sync.client import SyncClient
        from qrad_agent.sync.commands import CommandHandler, ReplayWindow
        from qrad_agent.sync.outbox import Outbox
        from qrad_agent.sync.signing import Verifier, load_public_key

        s = cfg.sync
        assert s is not None
        self.outbox = Outbox(s.outbox_path, s.outbox_max_messages, s.outbox_durability)
        verifier = Verifier(load_public_key(s.platform_public_key)) if s.platform_public_key else None
        replay = ReplayWindow(s.outbox_path.with_name("sync-commands.db"), s.command_replay_window_s)
        password = cfg.platform.password.get_secret_value() if cfg.platform.password else None
        self.platform_commands = AgentCommands(self.commands, cfg, self.jobs, self.status,
                                               lambda: self.run_info.config_path)
        handler = CommandHandler(self.platform_commands, replay, verifier, device_id=cfg.device_id)
        return SyncClient(s, cfg.device_id, self.outbox, handler, username=cfg.platform.username,
                          password=password)

    def _gains_confirmed(self, gains: PidGains) -> None:
        """Autotune's confirmed gains: kept in the state file (they survive a restart)."""
        self.tuned_gains = gains
        self.save_state()

    def components(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Name -> coroutine function of every supervised component."""
        api = ApiServer(self.cfg.api.socket_path, self.api_handlers(), self.cfg.api.group)
        components = {"safety": self.safety.run, "sensors": self.hub.run, "control": self.thermostat.run,
                      "api": api.run, "persist": self.persist, "operations": self.operations.run}
        if self.periodic_selftest.enabled:  # the daemon's (cli); a virtual-time run has no wall clock to check
            components["selftest"] = self.periodic_selftest.run
        if self.loopwatch is not None:
            components["loopwatch"] = self.loopwatch.run
        if self.jobs is not None:
            components["jobs"] = self.jobs.run
            from qrad_agent.jobs.launcher import RemoteLauncher

            if isinstance(self.jobs.launcher, RemoteLauncher):
                from qrad_agent.jobs.deadman import DeadmanBeat

                self.deadman = DeadmanBeat(self.jobs.launcher, self.cfg.jobs.deadman_timeout_s)
                components["deadman"] = self.deadman.run
        if self.energy is not None:
            components["energy"] = self.energy.run
        if self.sync is not None:
            components["sync"] = self.sync.run
            from qrad_agent.platform import Reporter

            components["reporter"] = Reporter(self.cfg, self.parts, self.sync).run
        if self.fire is not None:
            components["fire"] = self.fire.run
        return components

    def api_handlers(self) -> dict[str, Handler]:
        """Local API methods: read-only views for the technicians' group, changes (the commands surface)
        for the privileged one."""
        from qrad_agent.ops import handlers
        from qrad_agent.ops.explain import explain_power
        from qrad_agent.ops.selftest import as_json, run_selftest
        from qrad_agent.ops.status import build_status

        def thermostat_view() -> dict[str, Any]:
            t = self.thermostat
            until = t.override_until_s
            mode_now, setpoint_now_c = t.mode_now()
            return {**t.status(), "mode_setting": t.mode_setting, "mode_now": mode_now,
                    "setpoint_now_c": setpoint_now_c,
                    "override_remaining_s": None if until is None else max(0.0, until - self.clock.monotonic())}

        views = handlers.Views(
            status=lambda: build_status(self.status(), self.parts), sensors=self.hub.status,
            power_explain=lambda: explain_power(self.thermostat, self.power, self.safety),
            selftest=lambda: as_json(run_selftest(self.parts)), thermostat=thermostat_view,
            safety=self.safety.status, autotune_status=self.tuner.status, fire_test_status=self.fire_test.status)
        return handlers.build(self.commands, views, self.cfg.api.privileged_group)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Raises ComponentDied if a component ends or fails."""
        self.power.force_minimum("starting", routine=True)
        self.run_info.started_at = (self.clock.monotonic(), time.time())
        self.restore_state()
        tasks: dict[asyncio.Task[Any], str] = {
            asyncio.create_task(fn(), name=name): name for name, fn in self.components().items()}
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
            # The stop latch first: whatever still runs while the tasks are cancelled (a command, a long
            # operation's clean-up) is refused above the floor from now on; the long operations end next
            # (autotune restores its held demand, a fire test its condition), then the floor, then the rest.
            self.safety_state.stop("agent stopping")
            self.notifier.notify("STOPPING=1")
            await self.operations.stop()
            self.power.force_minimum("agent stopped", routine=True)
            await self._cancel([*tasks, stopper])
            self.power.force_minimum("agent stopped", routine=True)
            self.save_state()
            await self.fire_response.drain()
            if self.sync is not None:
                await self.platform_commands.close()
                self.outbox.close()
            log.info("agent stopped")

    async def _cancel(self, tasks: list[asyncio.Task]) -> None:
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            log.error("component did not stop in time", component=task.get_name())

    def state(self) -> dict:
        """What survives a restart: controller state and the learned power curve."""
        state: dict = {"saved_at": time.time(), "power_curve": self.power.curve.state()}
        if isinstance(self.thermostat.controller, PidStep):
            state["pid"] = self.thermostat.controller.pid.state()
        if self.tuned_gains is not None:
            state["pid_gains"] = dataclasses.asdict(self.tuned_gains)
        if self.energy is not None:
            state["energy"] = self.energy.state()
        if self.fire_response.latched is not None:
            state["fire_alarm"] = self.fire_response.latched
        if self.thermostat.predictor is not None:
            state["predict"] = self.thermostat.predictor.state()
        t = self.thermostat
        if t.override_c is not None:
            remaining = None if t.override_until_s is None else max(0.0, t.override_until_s - self.clock.monotonic())
            state["override"] = {"setpoint_c": t.override_c, "remaining_s": remaining}
        return state

    async def persist(self) -> None:
        """Save the state every STATE_SAVE_PERIOD_S until cancelled (the write runs off the loop)."""
        while True:
            await asyncio.sleep(STATE_SAVE_PERIOD_S)
            state = self.state()
            try:
                await asyncio.to_thread(save_state, self.state_path, state)
            except OSError as exc:
                log.error("state not saved", path=str(self.state_path), error=str(exc))

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
        self.fire_response.restore(state.get("fire_alarm"))
        if self.energy is not None:
            self.energy.restore(state.get("energy"))
        if isinstance(state.get("predict"), dict) and self.thermostat.predictor is not None:
            try:  # the learned room model is kept whatever the state's age: the room is the same
                self.thermostat.predictor.restore(state["predict"])
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("room model not restored", error=str(exc))
        gains = state.get("pid_gains")
        if isinstance(gains, dict) and isinstance(self.thermostat.controller, PidStep):
            try:
                self.tuned_gains = PidGains(**gains)
                self.thermostat.controller.pid.set_gains(self.tuned_gains)
            except (TypeError, ValueError) as exc:
                log.warning("tuned gains not restored", error=str(exc))
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
        from qrad_agent.log import sink

        status = {"device_id": self.cfg.device_id, "version": qrad_agent.__version__, "logging": sink.status(),
                  "thermostat": self.thermostat.status(),
                  "power": self.power.status(), "safety": self.safety.status(), "sensors": self.hub.status()}
        if self.jobs is not None:
            status["jobs"] = self.jobs.status()
        if self.energy is not None:
            status["energy"] = self.energy.status()
        if self.sync is not None:
            status["sync"] = self.sync.status()
        if self.fire is not None:
            status["fire"] = self.fire.status()
        if self.deadman is not None:
            status["deadman"] = self.deadman.status()
        status["selftest"] = self.periodic_selftest.status()
        if self.loopwatch is not None:
            status["event_loop"] = self.loopwatch.status()
        return status


def fan_readings(hub: SensorHub, channels: list[str], clock: Clock,
                 max_age_s: float = 30.0) -> Callable[[], dict[str, float | None]]:
    """The fans' latest valid RPM from ``hub`` (None: no valid reading younger than ``max_age_s`` s)."""
    def read() -> dict[str, float | None]:
        now_s = clock.monotonic()
        result: dict[str, float | None] = {}
        for channel in channels:
            reading = hub.latest.get(channel)
            fresh = reading is not None and reading.ok and now_s - reading.t_s <= max_age_s
            result[channel] = reading.value if fresh and reading is not None else None
        return result
    return read


def _good_value(hub: SensorHub, channel: str) -> float | None:
    reading = hub.latest.get(channel)
    return reading.value if reading is not None and reading.ok else None


def channel_value(hub: SensorHub, channel: str, clock: Clock, max_age_s: float = 30.0) -> Callable[[], float | None]:
    """The latest valid value of ``channel`` (None: no valid reading younger than ``max_age_s`` s)."""
    return lambda: fan_readings(hub, [channel], clock, max_age_s)()[channel]
