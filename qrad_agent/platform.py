"""The agent's side of platform sync: the commands the platform may send, and what the agent reports.

`AgentCommands` implements the sync layer's CommandTarget over the agent's components; `Reporter` is a
supervised component that hands a telemetry batch to the outbox each ``telemetry_period_s`` (each channel
sent, aggregated or kept local as ``sync.privacy`` says: `qrad_agent.sync.privacy`) and refreshes the
retained state (mode, setpoint, power, heat demand and the
compute capacity it implies) each ``state_period_s``, and the retained heat-demand forecast (96 slots of
15 min) every ``thermostat.predict.forecast_period_s`` and whenever a slot moves by more than
``forecast_change_w``. Neither ever waits on the network: the outbox
accepts while the broker is away.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

import qrad_agent
from qrad_agent.ops.commands import Commands
from qrad_agent.config import AgentConfig
from qrad_agent.jobs.model import RejectReason
from qrad_agent.parts import HeaterParts
from qrad_agent.sensing.hub import SensorHub
from qrad_agent.sync.bundles import BundleError, BundleFetcher
from qrad_agent.sync.commands import CommandRejected, JobManifest
from qrad_agent.sync.contract import (
    DemandForecastMessage,
    EventMessage,
    JobStatusMessage,
    Kind,
    Reading,
    StateMessage,
    TelemetryBatch,
    envelope_bytes,
)
from qrad_agent.sync.outbox import OutboxError
from qrad_agent.sync.privacy import ChannelAggregator, Policy, local_day_start, personal_kind

if TYPE_CHECKING:
    from qrad_agent.jobs.runner import JobRunner

log = structlog.get_logger(component="platform")

QUALITY = {"ok": "good", "stale": "suspect", "out_of_range": "suspect", "fault": "fault"}


class AgentCommands:
    """The platform's commands (the sync layer's CommandTarget) on the agent's one command surface,
    `qrad_agent.ops.commands.Commands`, plus what only the platform sends: signed job manifests, agent updates
    and the diagnostics request. Runtime changes; the config file is not rewritten."""

    def __init__(self, commands: Commands, cfg: AgentConfig, jobs: JobRunner | None,
                 diagnostics: Callable[[], dict[str, Any]], config_path: Callable[[], Path | None]) -> None:
        self.commands = commands
        self.cfg = cfg
        self.jobs = jobs
        self._diagnostics = diagnostics
        self._config_path = config_path
        self._bundle_fetcher: BundleFetcher | None = None
        self._fetching: dict[str, asyncio.Task] = {}

    async def set_setpoint(self, mode: str, setpoint_c: float) -> None:
        self.commands.set_setpoint(mode, setpoint_c, by="platform")

    async def set_mode(self, mode: str) -> None:
        self.commands.set_mode(mode, by="platform")

    async def set_schedule(self, rules: list[dict[str, str]]) -> None:
        self.commands.set_schedule(rules, by="platform")

    async def set_override(self, setpoint_c: float, duration_s: float | None) -> None:
        self.commands.set_override(setpoint_c, duration_s, by="platform")

    async def clear_override(self) -> None:
        self.commands.clear_override(by="platform")

    async def submit_job(self, manifest: JobManifest) -> None:
        """Queue the job whose bundle is on the heater (``<jobs_dir>/incoming/<sha256>``), or accept it and
        fetch the bundle in the background (``sync.bundle_url``): the job's status messages say the rest."""
        jobs = self.jobs
        if jobs is None:
            raise CommandRejected("jobs are disabled on this heater")
        if manifest.device_id != self.cfg.device_id:
            raise CommandRejected(f"manifest is for device {manifest.device_id}, this heater is "
                                  f"{self.cfg.device_id}")
        if manifest.job_id in jobs.records or manifest.job_id in self._fetching:
            raise CommandRejected(f"job {manifest.job_id} exists")
        try:
            replayed = await asyncio.to_thread(jobs.command_seen, manifest.job_id, manifest.nonce,
                                               manifest.not_after)
        except (sqlite3.Error, OSError) as exc:  # e.g. a full disk: refused, never run unrecorded
            raise CommandRejected(f"no_space: replay record not written: {exc}") from exc
        if replayed is not None:
            raise CommandRejected(f"replayed: {replayed}")
        bundle = jobs.cfg.jobs_dir / "incoming" / manifest.image_sha256
        if bundle.exists():
            record = await jobs.submit_async(bundle, expected_id=manifest.job_id)
            if record.status.value == "rejected":
                raise CommandRejected(f"job refused: {record.reason}: {record.detail}")
            return
        fetcher = self._fetcher()
        if fetcher is None:
            raise CommandRejected(f"bundle {manifest.image_sha256[:12]} is not on the heater and sync.bundle_url "
                                  "is not set")
        self._fetching[manifest.job_id] = asyncio.get_running_loop().create_task(
            self._fetch_and_submit(jobs, fetcher, manifest), name=f"fetch:{manifest.job_id}")

    def _fetcher(self) -> BundleFetcher | None:
        s = self.cfg.sync
        if self._bundle_fetcher is None and s is not None and s.bundle_url and self.jobs is not None:
            jobs_cfg = self.jobs.cfg
            self._bundle_fetcher = BundleFetcher(s.bundle_url, jobs_cfg.jobs_dir / "incoming",
                                                 jobs_cfg.max_bundle_mb << 20, s.ca_file, s.cert_file, s.key_file,
                                                 allow_http=s.bundle_allow_http)
        return self._bundle_fetcher

    async def _fetch_and_submit(self, jobs: JobRunner, fetcher: BundleFetcher, manifest: JobManifest) -> None:
        try:
            try:
                path = await asyncio.to_thread(fetcher.fetch, manifest.image_sha256)
            except BundleError as exc:
                log.warning("job bundle not fetched", job=manifest.job_id, error=str(exc))
                jobs.reject(manifest.job_id, RejectReason.BAD_BUNDLE, str(exc))
                return
            try:
                await jobs.submit_async(path, expected_id=manifest.job_id)
            finally:
                path.unlink(missing_ok=True)  # the job has its own copy now, or was refused
        finally:
            self._fetching.pop(manifest.job_id, None)

    async def close(self) -> None:
        """Cancel and await the bundle fetches in flight (the sync component's stop)."""
        tasks = list(self._fetching.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    async def cancel_job(self, job_id: str) -> None:
        self.commands.cancel_job(job_id)

    async def ack_job(self, job_id: str) -> None:
        self.commands.ack_job(job_id)

    async def diagnostics(self) -> dict[str, Any]:
        return self._diagnostics()

    async def reset_alarm(self, code: str) -> None:
        self.commands.reset_alarm(code, by="platform")

    async def set_grid_intensity(self, g_per_kwh: float) -> None:
        self.commands.set_grid_intensity(g_per_kwh, "platform")

    async def update_agent(self, bundle_sha256: str) -> None:
        """Start the updater as its own process (it restarts this agent; update/updater.py)."""
        from qrad_agent.update.launch import UpdateLaunchError, launch_updater

        try:
            await asyncio.to_thread(launch_updater, self.cfg, bundle_sha256, self._config_path())
        except UpdateLaunchError as exc:
            raise CommandRejected(str(exc)) from exc
        log.warning("update started by the platform", bundle=bundle_sha256[:12])

    async def set_weather(self, points: list[tuple[float, float, float]]) -> None:
        """Outdoor forecast points (unix s, °C, W/m²) for the room model (local calendar time)."""
        self.commands.set_weather(points)

    async def demand_response(self, request_id: str, start: float, end: float, kind: str, limit_w: float,
                              dry_run: bool) -> dict[str, Any]:
        """Check and (unless ``dry_run``) accept a demand-response request; the expected discomfort."""
        return self.commands.demand_response(request_id, start, end, kind, limit_w, dry_run, by="platform")


class Reporter:
    """Telemetry batches and the retained state, from the agent's components (``parts``) to the outbox."""

    def __init__(self, cfg: AgentConfig, parts: HeaterParts, sync: Any,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.parts = parts
        self.sync = sync
        self.wall_clock = wall_clock
        self.policies = channel_policies(cfg, parts.hub)
        self.aggregators = {
            name: ChannelAggregator(name, kind, local_day_start)
            for name, spec in parts.hub.specs.items() if self.policies[name] is Policy.AGGREGATE
            for kind in [personal_kind(name, spec.quantity, cfg.fire.occupancy_channels)] if kind is not None}
        self._consumed: dict[str, float] = {}  # per aggregated channel: the hub time of the last sample taken
        self._update_marker = cfg.state_dir / "update-reported"
        self.last_forecast: DemandForecastMessage | None = None
        self._forecast_at_s: float | None = None  # loop time of the last forecast published
        self._dr_reported = 0  # demand-response outcomes already sent (DemandResponse.completed)

    def state(self) -> StateMessage:
        """The retained state now."""
        t, p, jobs = self.parts.thermostat, self.parts.power, self.parts.jobs
        mode = t.status()["mode"]
        demand = max(0.0, t.demand_w)
        max_w = p.cfg.max_w
        cores = (self.cfg.jobs.cpus if jobs else 0) * min(1.0, demand / max_w)
        health = "safe_state" if self.parts.safety.forced else "ok"
        energy = self.parts.energy.status() if self.parts.energy is not None else {}
        return StateMessage(mode=mode if mode in ("auto", "comfort", "eco", "frost", "off") else "auto",
                            setpoint_c=None if math.isnan(t.setpoint_c) else t.setpoint_c,
                            room_c=None if math.isnan(t.pv_c) else t.pv_c, power_w=p.measured_w,
                            heat_demand_w=demand, compute_capacity_cores=cores, health=health,
                            jobs_running=jobs.used_slots() if jobs else 0,
                            heat_delivered_kwh=energy.get("heat_delivered_kwh"),
                            compute_core_h_per_kwh=energy.get("compute_core_h_per_kwh"),
                            agent_version=qrad_agent.__version__,
                            carbon_days=energy.get("carbon", {}).get("days") or None)

    def telemetry(self) -> TelemetryBatch:
        """The latest reading of each ``send`` channel and the closed periods of each ``aggregate`` one,
        stamped with wall-clock time; ``local`` channels are left out."""
        now = self.wall_clock()
        offset = now - self.parts.clock.monotonic()
        readings = [Reading(channel=name, t=r.t_s + offset, value=None if r.value != r.value else r.value,
                            unit=r.unit[:16], quality=QUALITY[r.quality.value])
                    for name, r in self.parts.hub.latest.items() if self.policies.get(name) is Policy.SEND]
        for name, aggregator in self.aggregators.items():
            since = self._consumed.get(name, -math.inf)
            for r in self.parts.hub.channels[name].history:
                if r.t_s > since:
                    aggregator.add(r.t_s + offset, r.value, r.quality.value == "ok")
                    self._consumed[name] = r.t_s
            readings += [Reading(channel=a.channel, t=a.t, value=a.value, unit=a.unit,
                                 quality="good" if a.value is not None else "missing")
                         for a in aggregator.flush(now)]
        return TelemetryBatch(readings=readings[:1000])

    def forecast(self) -> DemandForecastMessage | None:
        """The heat-demand forecast now (model, else persistence); None without a predictor or history."""
        predictor = self.parts.thermostat.predictor
        if predictor is None:
            return None
        now = self.parts.clock.now()
        demand = predictor.forecast(now, self.parts.thermostat.schedule)
        method: Literal["model", "persistence"] = "model"
        if demand is None:
            demand, method = predictor.persistence_forecast(now), "persistence"
        if demand is None:
            return None
        cpus = self.cfg.jobs.cpus if self.parts.jobs else 0
        max_w = self.parts.power.cfg.max_w
        fit = predictor.model.fit_rms_k
        return DemandForecastMessage(
            issued_at=time.time(), t0=predictor.slot_start(now).timestamp(), slot_s=predictor.s.slot_s,
            heat_demand_w=[round(max(0.0, w), 1) for w in demand],
            compute_capacity_cores=[round(cpus * min(1.0, max(0.0, w) / max_w), 3) for w in demand],
            method=method, model_fit_k=None if math.isnan(fit) else round(fit, 3),
            weather=predictor.weather_source(now))

    def maybe_publish_forecast(self) -> bool:
        """Publish the forecast when ``forecast_period_s`` has passed or a slot moved by more than
        ``forecast_change_w``; True if published."""
        cfg = self.cfg.thermostat.predict
        now_s = self.parts.clock.monotonic()
        due = self._forecast_at_s is None or now_s - self._forecast_at_s >= cfg.forecast_period_s
        message = self.forecast()
        if message is None:
            return False
        if not due and self.last_forecast is not None:
            shift = round((message.t0 - self.last_forecast.t0) / message.slot_s)
            old = self.last_forecast.heat_demand_w[shift:] if shift >= 0 else []
            moved = max((abs(a - b) for a, b in zip(message.heat_demand_w, old)), default=0.0)
            if moved <= cfg.forecast_change_w and message.method == self.last_forecast.method:
                return False
        self.sync.set_forecast(message)
        self.last_forecast, self._forecast_at_s = message, now_s
        return True

    async def report_jobs(self) -> int:
        """Publish each job whose platform status changed since the last report (through the outbox,
        never dropped); a finished job's message carries its result summary. Returns how many."""
        runner = self.parts.jobs
        if runner is None:
            return 0
        sent = 0
        for record in list(runner.records.values()):
            status = platform_job_status(record)
            if record.reported == status:
                continue
            result = await asyncio.to_thread(runner.result_summary, record.id) if record.status.terminal else {}
            if not record.status.terminal and record.reason:
                result = {"reason": record.reason}
            try:
                message = JobStatusMessage(job_id=record.id, status=status,
                                           exit_code=record.exit_code, result=result,
                                           cpu_s=record.usage.cpu_s or None, energy_wh=record.usage.energy_wh)
                envelope_bytes(self.sync.device_id, 1, 0.0, Kind.JOB, message.model_dump(mode="json"))
            except (ValueError, TypeError) as exc:  # a result that cannot be sent is a failed one, said why
                log.error("job result not encodable; reported as failed", job=record.id, error=str(exc)[:200])
                status = "failed"
                message = JobStatusMessage(job_id=record.id, status="failed", exit_code=record.exit_code,
                                           result={"reason": "result_unencodable", "detail": str(exc)[:200]},
                                           energy_wh=record.usage.energy_wh)
            try:
                await self.sync.enqueue(Kind.JOB, message)
            except OutboxError as exc:  # the outbox's disk is full: kept unreported, tried again next round
                log.error("job status not stored in the outbox; retried", job=record.id, error=str(exc))
                break
            runner.mark_reported(record.id, status)
            sent += 1
        return sent

    def _pending_updates(self) -> list[dict[str, Any]]:
        """Update outcomes newer than the last one reported (blocking file reads: run in a thread)."""
        from qrad_agent.update.layout import Layout

        try:
            last_at = float(self._update_marker.read_text().strip() or 0)
        except (OSError, ValueError):
            last_at = 0.0
        return [e for e in Layout(self.cfg.update.root).history()
                if isinstance(e.get("at"), (int, float)) and e["at"] > last_at]

    async def report_updates(self) -> int:
        """Each update outcome not reported yet (update-history.jsonl) as an ``update`` event with this agent's
        version; the last one reported is remembered in ``<state_dir>/update-reported``. Returns how many."""
        entries = await asyncio.to_thread(self._pending_updates)
        for entry in entries:
            detail = {k: v for k, v in entry.items() if isinstance(v, (str, int, float, bool)) or v is None}
            await self.sync.enqueue(Kind.EVENT, EventMessage(name="update", detail={
                **detail, "running_version": qrad_agent.__version__}))
        if entries:
            try:
                self._update_marker.parent.mkdir(parents=True, exist_ok=True)
                self._update_marker.write_text(f"{entries[-1]['at']}\n")
            except OSError as exc:
                log.error("update report marker not written", error=str(exc))
        return len(entries)

    async def report_demand_response(self) -> int:
        """Each demand-response outcome not reported yet, as a ``demand_response`` event. Returns how many."""
        dr = self.parts.thermostat.dr
        if dr is None:
            return 0
        new = min(dr.completed - self._dr_reported, len(dr.outcomes))
        for outcome in list(dr.outcomes)[len(dr.outcomes) - new:]:
            await self.sync.enqueue(Kind.EVENT, EventMessage(name="demand_response", detail=outcome.as_dict()))
        self._dr_reported = dr.completed
        return new

    async def run(self) -> None:
        """Until cancelled: state every ``sync.state_period_s``, telemetry every ``sync.telemetry_period_s``."""
        cfg = self.cfg.sync
        assert cfg is not None  # a Reporter exists only with sync configured
        loop = asyncio.get_running_loop()
        next_telemetry = loop.time() + cfg.telemetry_period_s
        while True:
            self.sync.set_state(self.state())
            await self.report_updates()
            self.maybe_publish_forecast()
            await self.report_demand_response()
            if self.parts.jobs is not None:
                await self.report_jobs()
            if loop.time() >= next_telemetry:
                await self.sync.enqueue(Kind.TELEMETRY, self.telemetry())
                next_telemetry += cfg.telemetry_period_s
            await asyncio.sleep(min(cfg.state_period_s, max(0.0, next_telemetry - loop.time())))


def channel_policies(cfg: AgentConfig, hub: SensorHub) -> dict[str, Policy]:
    """Channel -> its privacy policy: ``sync.privacy`` if it names the channel, else aggregate for a personal
    channel (presence, sound level, contacts) and send for the rest."""
    overrides = cfg.sync.privacy if cfg.sync is not None else {}
    policies = {}
    for name, spec in hub.specs.items():
        personal = personal_kind(name, spec.quantity, cfg.fire.occupancy_channels)
        default = Policy.AGGREGATE if personal is not None else Policy.SEND
        policies[name] = Policy(overrides.get(name, default))
    return policies


def platform_job_status(record: Any) -> str:
    """The contract's job status (JobStatusMessage.status) of a runner JobRecord."""
    status = record.status.value
    if status == "queued":
        return "checkpointed" if record.checkpoints > 0 else "accepted"
    if status in ("running", "succeeded", "cancelled"):
        return status
    return "failed"  # failed, killed_walltime, killed_memory, killed_output, rejected: the reason says which
