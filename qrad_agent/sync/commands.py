"""Platform commands: validated models, a persisted replay window, and the handler that applies them.

A command arrives on ``{prefix}/{device}/cmd`` (MQTT 5, with a response topic and correlation data) and is
answered on the response topic with a `CommandResponse`. The handler checks, in order: JSON, the command
name, the model (strict types, bounds), the addressee (``device_id``, when the command names one), age and
expiry, the Ed25519 signature, the command id against the replay window; only then does it call the agent
through `CommandTarget`. Any failure is an error response with a `Reason` and no agent call. The handler
never raises (cancellation aside).

Signed commands (``submit_job``, ``reset_alarm``): the signature covers the whole command but itself, i.e.
``canonical(command without "signature")``: the command id, ``issued_at``, ``expires_at``, the addressed
``device_id`` (required on these) and the payload (the job manifest). A signed manifest re-sent in a new
envelope (another command id or issue time) or to another heater fails the signature.

Replay: an id is remembered until ``issued_at + window + CLOCK_SKEW_S``, which is past the last moment the
command could still pass the age check (``now - issued_at <= window``), even for a command issued up to
CLOCK_SKEW_S in the future; remembering by time of receipt would forget such a command while it is still
acceptable.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from qrad_agent.schedule_grammar import ScheduleRuleSpec
from qrad_agent.errors import Refused
from qrad_agent.files import private_sqlite
from qrad_agent.sync.signing import Verifier

log = structlog.get_logger(component="sync.commands")

COMMAND_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_PAYLOAD_BYTES = 64 * 1024
CLOCK_SKEW_S = 300.0
"""A command issued further than this in the future is refused as invalid (a wrong platform clock)."""


class Reason(StrEnum):
    OK = "ok"
    MALFORMED_JSON = "malformed_json"
    TOO_LARGE = "too_large"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID = "invalid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    BAD_SIGNATURE = "bad_signature"
    REJECTED = "rejected"
    BUSY = "busy"
    INTERNAL_ERROR = "internal_error"


class CommandRejected(Refused):
    """Raised by a `CommandTarget` method that refuses a valid command (e.g. an unknown job id)."""


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1]
    command_id: str = Field(pattern=COMMAND_ID)
    issued_at: float = Field(description="unix time, s")
    expires_at: float | None = Field(None, description="unix time after which the command is void")
    device_id: str | None = Field(None, max_length=64,
                                  description="the heater addressed; required on signed commands")


class SetSetpoint(_Command):
    command: Literal["set_setpoint"]
    mode: Literal["comfort", "eco", "frost"]
    setpoint_c: float = Field(ge=5, le=30)


class SetMode(_Command):
    command: Literal["set_mode"]
    mode: Literal["auto", "comfort", "eco", "frost", "off"]


class SetSchedule(_Command):
    """The weekly schedule, in the one grammar of the config file (control/schedule.py)."""

    command: Literal["set_schedule"]
    rules: list[ScheduleRuleSpec] = Field(min_length=1, max_length=64)


class SetOverride(_Command):
    """Hold ``setpoint_c`` instead of the schedule for ``duration_s`` (None: until cleared)."""

    command: Literal["set_override"]
    setpoint_c: float = Field(ge=5, le=30)
    duration_s: float | None = Field(None, gt=0, le=7 * 86400)


class ClearOverride(_Command):
    command: Literal["clear_override"]


class WeatherPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    t: float = Field(description="unix time, s")
    outdoor_c: float = Field(ge=-60, le=60)
    ghi_w_m2: float = Field(0.0, ge=0, le=1500, description="global horizontal irradiance, W/m²")


class SetWeather(_Command):
    """The outdoor forecast (and the recent past) for the heater's room model; hourly points suffice."""

    command: Literal["set_weather"]
    points: list[WeatherPoint] = Field(min_length=1, max_length=240)


class JobManifest(BaseModel):
    """What the platform signs: the job, the heater it is for, a nonce, its image digest and its limits.

    ``device_id`` and ``nonce`` bind the signature to one heater and one submission: the heater refuses a
    manifest for another device, and one whose job id or nonce it has seen (the manifest re-sent inside a
    new command, or after ``ack_job``), until ``not_after`` (jobs/seen.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    job_id: str = Field(pattern=COMMAND_ID)
    device_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the heater it is for")
    nonce: str = Field(pattern=r"^[A-Za-z0-9_-]{16,128}$", description="unique per manifest")
    image_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    argv: list[Annotated[str, Field(max_length=4096)]] = Field(min_length=1, max_length=256)
    cpus: float = Field(gt=0, le=1024)
    max_runtime_s: float = Field(gt=0, le=30 * 86400)
    checkpoint: bool = False
    not_after: float = Field(description="unix time after which the manifest is void")


class _Signed(_Command):
    """A command signed as a whole: ``signature`` is base64 Ed25519 over canonical(command without it)."""

    device_id: str = Field(max_length=64, description="the heater addressed (signed, so not redirectable)")
    signature: str = Field(max_length=200, description="base64 Ed25519 over canonical(command without it)")


class SubmitJob(_Signed):
    command: Literal["submit_job"]
    manifest: JobManifest


class CancelJob(_Command):
    command: Literal["cancel_job"]
    job_id: str = Field(pattern=COMMAND_ID)


class AckJob(_Command):
    """The platform has a finished job's result: the heater deletes the job's files."""

    command: Literal["ack_job"]
    job_id: str = Field(pattern=COMMAND_ID)


class RequestDiagnostics(_Command):
    command: Literal["request_diagnostics"]


class ResetAlarm(_Signed):
    command: Literal["reset_alarm"]
    code: str = Field(pattern=COMMAND_ID)


class UpdateAgent(_Command):
    """Install the update bundle with this SHA-256 from the bundle store (its own release signature is checked
    by the updater: docs/update.md); the outcome comes back as an ``update`` event."""

    command: Literal["update_agent"]
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SetGridIntensity(_Command):
    """The grid's carbon intensity now, gCO2e/kWh, for the heater's carbon facts (jobs/carbon.py)."""

    command: Literal["set_grid_intensity"]
    g_per_kwh: float = Field(ge=0, le=5000)


class DemandResponse(_Command):
    """Shift load for the grid: from ``start`` to ``end`` (unix s) keep power at most ``limit_w`` (``shed``) or
    take at least ``limit_w`` (``absorb``). The response's result gives the discomfort the heater's room
    model expects (K·h below the comfort band during the window and 2 h after; null without a model) and the
    lowest room temperature; a shed that would take the room below frost protection is rejected.
    ``dry_run``: only answer, keep nothing. The outcome comes back as a ``demand_response`` event."""

    command: Literal["demand_response"]
    start: float = Field(description="unix time, s")
    end: float = Field(description="unix time, s; after start, at most 24 h after it")
    kind: Literal["shed", "absorb"] = "shed"
    limit_w: float = Field(ge=0, le=100000)
    dry_run: bool = False


COMMANDS: tuple[type[_Command], ...] = (SetSetpoint, SetMode, SetSchedule, SetOverride, ClearOverride,
                                        SubmitJob, CancelJob, AckJob,
                                        RequestDiagnostics, ResetAlarm, UpdateAgent, SetGridIntensity,
                                        SetWeather, DemandResponse)
COMMAND_NAMES = frozenset(m.model_fields["command"].annotation.__args__[0] for m in COMMANDS)  # type: ignore
Command = Annotated[Union[COMMANDS], Field(discriminator="command")]  # type: ignore[valid-type]  # noqa: UP007
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Command)


class CommandResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    command_id: str | None
    command: str | None
    ok: bool
    reason: Reason
    detail: str = ""
    result: dict[str, Any] = Field(default_factory=dict)


def COMMAND_SCHEMA_MODELS() -> dict[str, dict[str, Any]]:  # upper case: used as a constant by contract.schemas
    """JSON Schema of the command union and the response."""
    return {"command": _ADAPTER.json_schema(), "command_response": CommandResponse.model_json_schema(),
            "job_manifest": JobManifest.model_json_schema()}


class CommandTarget(Protocol):
    """What the agent provides to the handler. A method may raise `CommandRejected` to refuse."""

    async def set_setpoint(self, mode: str, setpoint_c: float) -> None: ...
    async def set_mode(self, mode: str) -> None: ...
    async def set_schedule(self, rules: list[dict[str, str]]) -> None: ...
    async def set_override(self, setpoint_c: float, duration_s: float | None) -> None: ...
    async def clear_override(self) -> None: ...
    async def submit_job(self, manifest: JobManifest) -> None: ...
    async def cancel_job(self, job_id: str) -> None: ...
    async def ack_job(self, job_id: str) -> None: ...
    async def diagnostics(self) -> dict[str, Any]: ...
    async def reset_alarm(self, code: str) -> None: ...
    async def update_agent(self, bundle_sha256: str) -> None: ...
    async def set_grid_intensity(self, g_per_kwh: float) -> None: ...
    async def set_weather(self, points: list[tuple[float, float, float]]) -> None: ...
    async def demand_response(self, request_id: str, start: float, end: float, kind: str, limit_w: float,
                              dry_run: bool) -> dict[str, Any]: ...


class ReplayWindow:
    """Command ids remembered until ``issued_at + window_s + CLOCK_SKEW_S``, persisted in SQLite (survives a
    restart). The database file is created 0600 (see `qrad_agent.files`)."""

    def __init__(self, path: Path, window_s: float) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._db = private_sqlite(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS command_ids (id TEXT PRIMARY KEY, issued_at REAL NOT NULL,"
                         " keep_until REAL NOT NULL, received_at REAL NOT NULL)")
        legacy = self._db.execute("SELECT name FROM sqlite_master WHERE name = 'seen_commands'").fetchone()
        if legacy:  # ids stored by time of receipt (older versions): kept a whole window from it, plus skew
            self._db.execute("INSERT OR IGNORE INTO command_ids SELECT id, at, at + ?, at FROM seen_commands",
                             (window_s + CLOCK_SKEW_S,))
            self._db.execute("DROP TABLE seen_commands")

    def claim(self, command_id: str, issued_at: float, now: float) -> bool:
        """Record ``command_id`` issued at ``issued_at`` (unix s) and received at ``now``; False if it is
        already remembered (a replay). Forgets ids whose ``keep_until`` has passed."""
        keep_until = issued_at + self.window_s + CLOCK_SKEW_S
        with self._lock:
            self._db.execute("DELETE FROM command_ids WHERE keep_until < ?", (now,))
            cur = self._db.execute("INSERT OR IGNORE INTO command_ids (id, issued_at, keep_until, received_at) "
                                   "VALUES (?, ?, ?, ?)", (command_id, issued_at, keep_until, now))
            return cur.rowcount == 1

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM command_ids")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CommandHandler:
    """Validates and applies platform commands; see the module docstring for the order of checks."""

    def __init__(self, target: CommandTarget, replay: ReplayWindow, verifier: Verifier | None,
                 wall_clock: Callable[[], float] = time.time, device_id: str | None = None) -> None:
        """``device_id``: this heater's id; a command naming another device is refused (None: not checked,
        for tests of one handler)."""
        self.device_id = device_id
        self.target = target
        self.replay = replay
        self.verifier = verifier
        self.wall_clock = wall_clock
        self.counts: dict[str, int] = {}

    async def handle(self, payload: bytes) -> CommandResponse:
        """Answer one command payload. Never raises except CancelledError."""
        try:
            response = await self._handle(payload)
        except Exception as exc:  # the last line: a handler bug must not kill the sync component
            log.exception("command handler failed")
            response = _error(None, None, Reason.INTERNAL_ERROR, type(exc).__name__)
        self.counts[response.reason] = self.counts.get(response.reason, 0) + 1
        return response

    async def _handle(self, payload: bytes) -> CommandResponse:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return _error(None, None, Reason.TOO_LARGE, f"{len(payload)} bytes")
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(None, None, Reason.MALFORMED_JSON, str(exc)[:200])
        ident = _str_field(raw, "command_id")
        name = _str_field(raw, "command")
        if name not in COMMAND_NAMES:
            return _error(ident, None, Reason.UNKNOWN_COMMAND, f"unknown command {name!r}"[:200])
        try:
            cmd = _ADAPTER.validate_python(raw)
        except ValidationError as exc:
            return _error(ident, name, Reason.INVALID, _summary(exc))
        problem = self._check(cmd)
        if problem is not None:
            return problem
        if not self.replay.claim(cmd.command_id, cmd.issued_at, self.wall_clock()):
            return _error(cmd.command_id, name, Reason.REPLAYED, "command id already seen")
        try:
            result = await self._apply(cmd)
        except Refused as exc:  # CommandRejected, or a refusal from the commands surface
            return _error(cmd.command_id, name, Reason.REJECTED, str(exc)[:500])
        log.info("command applied", command=name, command_id=cmd.command_id)
        return CommandResponse(command_id=cmd.command_id, command=name, ok=True, reason=Reason.OK,
                               result=result or {})

    def _check(self, cmd: Any) -> CommandResponse | None:
        now = self.wall_clock()
        name = cmd.command
        if not all(map(math.isfinite, (cmd.issued_at, cmd.expires_at or 0.0))):
            return _error(cmd.command_id, name, Reason.INVALID, "issued_at/expires_at must be finite")
        if self.device_id is not None and cmd.device_id is not None and cmd.device_id != self.device_id:
            return _error(cmd.command_id, name, Reason.INVALID, "addressed to another device")
        if cmd.expires_at is not None and now > cmd.expires_at:
            return _error(cmd.command_id, name, Reason.EXPIRED, "expires_at passed")
        if now - cmd.issued_at > self.replay.window_s:
            return _error(cmd.command_id, name, Reason.EXPIRED, "older than the replay window")
        if cmd.issued_at - now > CLOCK_SKEW_S:
            return _error(cmd.command_id, name, Reason.INVALID, "issued_at in the future")
        if isinstance(cmd, SubmitJob) and now > cmd.manifest.not_after:
            return _error(cmd.command_id, name, Reason.EXPIRED, "manifest not_after passed")
        if isinstance(cmd, _Signed) and not self._signed(cmd.model_dump(exclude={"signature"}), cmd.signature):
            return _error(cmd.command_id, name, Reason.BAD_SIGNATURE, "command signature")
        return None

    def _signed(self, document: dict[str, Any], signature: str) -> bool:
        return self.verifier is not None and self.verifier.verify(document, signature)

    async def _apply(self, cmd: Any) -> dict[str, Any] | None:
        t = self.target
        match cmd:
            case SetSetpoint():
                await t.set_setpoint(cmd.mode, cmd.setpoint_c)
            case SetMode():
                await t.set_mode(cmd.mode)
            case SetSchedule():
                await t.set_schedule([r.model_dump() for r in cmd.rules])
            case SetOverride():
                await t.set_override(cmd.setpoint_c, cmd.duration_s)
            case ClearOverride():
                await t.clear_override()
            case SubmitJob():
                await t.submit_job(cmd.manifest)
            case CancelJob():
                await t.cancel_job(cmd.job_id)
            case AckJob():
                await t.ack_job(cmd.job_id)
            case RequestDiagnostics():
                return {"diagnostics": await t.diagnostics()}
            case ResetAlarm():
                await t.reset_alarm(cmd.code)
            case UpdateAgent():
                await t.update_agent(cmd.bundle_sha256)
            case SetGridIntensity():
                await t.set_grid_intensity(cmd.g_per_kwh)
            case SetWeather():
                await t.set_weather([(p.t, p.outdoor_c, p.ghi_w_m2) for p in cmd.points])
            case DemandResponse():
                return await t.demand_response(cmd.command_id, cmd.start, cmd.end, cmd.kind, cmd.limit_w,
                                               cmd.dry_run)
        return None


def _error(ident: str | None, name: str | None, reason: Reason, detail: str) -> CommandResponse:
    return CommandResponse(command_id=ident, command=name, ok=False, reason=reason, detail=detail)


def _str_field(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value[:64] if isinstance(value, str) else None


def _summary(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)[:500]
