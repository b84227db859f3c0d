"""The topic and message contract between a heater and the platform, version 1 (docs/sync.md).

Topics live under ``{prefix}/{device_id}/`` (prefix ``qrad/v1``): a heater's certificate may only touch
its own subtree. Every message the heater sends through the outbox is an `Envelope` carrying a per-device
sequence number, so the platform can deduplicate QoS 1 (at least once) delivery. The models are the
contract: ``python -m qrad_agent.sync.contract DIR`` writes their JSON Schema.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qrad_agent.envvars import DEVICE_ID_PATTERN

CONTRACT_VERSION = 1
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
"""A device id is one topic level and an ACL identity: no '/', '+', '#', '$', spaces or controls."""
ONLINE = b"online"
OFFLINE = b"offline"


class ContractError(ValueError):
    """A device id or topic that the contract refuses (wildcards, separators, outside the subtree)."""


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` or raise ContractError if it could not be one safe topic level."""
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise ContractError(f"device id {device_id!r} refused: 1-63 of A-Z a-z 0-9 '-', not starting or "
                            "ending with '-' (the certificate CN form)")
    return device_id


@dataclass(frozen=True)
class Topics:
    """Every topic of one device."""

    prefix: str
    device_id: str

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if any(c in self.prefix for c in "+#") or not self.prefix or self.prefix.endswith("/"):
            raise ContractError(f"topic prefix {self.prefix!r} refused")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    telemetry = property(lambda self: f"{self.base}/telemetry")
    state = property(lambda self: f"{self.base}/state")
    forecast = property(lambda self: f"{self.base}/forecast")
    events = property(lambda self: f"{self.base}/events")
    alarms = property(lambda self: f"{self.base}/alarms")
    jobs = property(lambda self: f"{self.base}/jobs")
    availability = property(lambda self: f"{self.base}/availability")
    commands = property(lambda self: f"{self.base}/cmd")
    responses = property(lambda self: f"{self.base}/resp")

    def response_topic(self, requested: str | None) -> str:
        """Where to answer a command: the requested response topic if it lies in our ``resp`` subtree."""
        if requested and not any(c in requested for c in "+#") and (
                requested == self.responses or requested.startswith(self.responses + "/")):
            return requested
        return self.responses


class Kind(IntEnum):
    """Outbox message kinds; the value is the drop class (lower is dropped first, 2 never)."""

    TELEMETRY = 0
    EVENT = 1
    RESPONSE = 2
    ALARM = 3
    JOB = 4

    @property
    def drop_class(self) -> int:
        return {0: 0, 1: 1, 2: 1}.get(int(self), 2)

    def topic(self, topics: Topics) -> str:
        return {Kind.TELEMETRY: topics.telemetry, Kind.EVENT: topics.events, Kind.RESPONSE: topics.responses,
                Kind.ALARM: topics.alarms, Kind.JOB: topics.jobs}[self]

    @property
    def retain(self) -> bool:
        """Alarm messages are retained: the last one carries the active set."""
        return self is Kind.ALARM


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reading(Model):
    channel: str = Field(max_length=64)
    t: float = Field(description="unix time of the sample, s")
    value: float | None
    unit: str = Field("", max_length=16)
    quality: Literal["good", "suspect", "fault", "missing"] = "good"


class TelemetryBatch(Model):
    readings: list[Reading] = Field(max_length=1000)


class StateMessage(Model):
    """Retained on ``state``: what the platform needs to place work where heat is wanted."""

    mode: Literal["auto", "comfort", "eco", "frost", "off"]
    setpoint_c: float | None
    room_c: float | None = None
    power_w: float | None = None
    heat_demand_w: float = Field(ge=0, description="heat the room wants now, W")
    compute_capacity_cores: float = Field(ge=0, description="compute that heat demand implies, cores")
    health: Literal["ok", "degraded", "safe_state"] = "ok"
    jobs_running: int = Field(0, ge=0)
    heat_delivered_kwh: float | None = Field(None, ge=0, description="electrical energy turned into heat "
                                             "since installation (all of it heats the room), kWh")
    compute_core_h_per_kwh: float | None = Field(None, ge=0, description="jobs' CPU core-hours per kWh")
    agent_version: str | None = Field(None, max_length=64, description="the running agent's version")
    carbon_days: dict[str, dict[str, float]] | None = Field(
        None, description="per local day: energy_kwh, heat_reused_kwh, emitted_g, avoided_g, net_g (gCO2e)")


FORECAST_SLOTS = 96


class DemandForecastMessage(Model):
    """Retained on ``forecast``: the heat the room will want in each 15-min slot of the next 24 h.

    ``t0`` is the start of the first slot (unix s, on a quarter hour); slot k covers
    [t0 + k·slot_s, t0 + (k+1)·slot_s). ``method``: "model" (the learned room model, the schedule with
    optimal start, the weather forecast) or "persistence" (the power of the same slot a day before, while
    the model is not good enough). ``model_fit_k``: the model's 2-h free-run RMS error, K.
    """

    issued_at: float = Field(description="unix time, s")
    t0: float = Field(description="unix time of the start of the first slot, s")
    slot_s: float = Field(900.0, gt=0)
    heat_demand_w: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, max_length=FORECAST_SLOTS)
    compute_capacity_cores: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, max_length=FORECAST_SLOTS)
    method: Literal["model", "persistence"]
    model_fit_k: float | None = None
    weather: Literal["forecast", "persistence", "none"] = "none"


class EventMessage(Model):
    name: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict)


class AlarmMessage(Model):
    code: str = Field(max_length=64)
    severity: Literal["info", "warning", "critical"]
    state: Literal["raised", "cleared"]
    latched: bool = False
    detail: str = Field("", max_length=500)
    active: list[str] = Field(default_factory=list, description="every alarm active after this one")


class JobStatusMessage(Model):
    job_id: str = Field(max_length=64)
    status: Literal["accepted", "running", "checkpointed", "succeeded", "failed", "cancelled"]
    exit_code: int | None = None
    result: dict[str, Any] = Field(default_factory=dict, description="result digest, counters")
    cpu_s: float | None = None
    energy_wh: float | None = None


BODY_OF_KIND: dict[Kind, type[BaseModel]] = {
    Kind.TELEMETRY: TelemetryBatch, Kind.EVENT: EventMessage, Kind.ALARM: AlarmMessage,
    Kind.JOB: JobStatusMessage}


class Envelope(Model):
    """Every outbox message: version, device, per-device sequence number, time, kind and body."""

    v: Literal[1] = 1
    device_id: str
    seq: int = Field(ge=1, description="per device, strictly increasing; equal seq = same message")
    ts: float = Field(description="unix time when the message entered the outbox, s")
    kind: Literal["telemetry", "event", "response", "alarm", "job"]
    body: dict[str, Any]


def envelope_bytes(device_id: str, seq: int, ts: float, kind: Kind, body: dict[str, Any]) -> bytes:
    """The wire form of an envelope: compact JSON, UTF-8."""
    return json.dumps({"v": CONTRACT_VERSION, "device_id": device_id, "seq": seq, "ts": ts,
                       "kind": kind.name.lower(), "body": body}, separators=(",", ":")).encode()


def schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every message of the contract, by file stem."""
    from qrad_agent.sync.commands import COMMAND_SCHEMA_MODELS  # the command models live with the handler

    models: dict[str, Any] = {"envelope": Envelope, "telemetry": TelemetryBatch, "state": StateMessage,
                              "forecast": DemandForecastMessage,
                              "event": EventMessage, "alarm": AlarmMessage, "job_status": JobStatusMessage}
    out = {name: model.model_json_schema() for name, model in models.items()}
    out.update({name: schema for name, schema in COMMAND_SCHEMA_MODELS().items()})
    from qrad_agent.jobs.model import Manifest  # the bundle's own signed manifest.json (jobs/model.py)

    out["bundle_manifest"] = Manifest.model_json_schema()
    for name, schema in out.items():
        schema["$id"] = f"https://qrad.example/schema/v{CONTRACT_VERSION}/{name}.json"
    return out


def export_schemas(directory: Path) -> list[Path]:
    """Write ``{name}.json`` for every schema into ``directory``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in sorted(schemas().items()):
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":  # python -m qrad_agent.sync.contract docs/schema
    for written in export_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")):
        print(written)
