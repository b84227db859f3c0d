"""The job model: the signed manifest, the job's status and its resource usage.

A bundle is a directory (or a tar archive of one) holding ``manifest.json``, the files it lists with their
SHA-256 and, when signed, ``manifest.sig``: the platform's Ed25519 signature over the exact bytes of
``manifest.json``. The hashes make the signature cover every file. A signed manifest also names the
heaters it is for (``devices``), a ``nonce`` and an ``expires_at``: the heater runs it only if it is one of
them, before the expiry, and only once (seen.py remembers the id and nonce until the expiry).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qrad_agent.errors import AgentError

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Job ids name directories and cgroups: no '/', no leading dot, no spaces."""
NONCE_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
"""A manifest's nonce: 16 to 128 URL-safe characters (e.g. 128 random bits as hex)."""
CHECKPOINTED_EXIT = 75
"""EX_TEMPFAIL: a checkpointable job exits with it after saving its state on SIGTERM ("resume me")."""


class Manifest(BaseModel):
    """What the platform signs: the command, its files and the limits it runs under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=JOB_ID_PATTERN)
    command: list[str] = Field(min_length=1, max_length=256)
    files: dict[str, str] = Field(description="relative path -> sha256 hex of every file of the bundle")
    cores: int = Field(1, ge=1)
    memory_mb: int = Field(256, ge=16)
    walltime_s: float = Field(3600.0, gt=0)
    output_mb: int = Field(64, ge=1)
    pids: int = Field(64, ge=8)
    priority: int = Field(0, ge=-100, le=100)
    checkpointable: bool = False
    grace_s: float = Field(10.0, gt=0, le=600, description="SIGTERM to SIGKILL when stopping the job")
    devices: list[str] | None = Field(None, min_length=1, max_length=10000,
                                      description="device ids allowed to run it (required when signed)")
    nonce: str | None = Field(None, pattern=NONCE_PATTERN, description="unique per manifest (required when "
                              "signed): a manifest whose nonce was seen is a replay")
    expires_at: float | None = Field(None, description="unix time, s, after which it is refused (required when "
                                     "signed; at most 30 days ahead)")

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for path, digest in files.items():
            parts = path.split("/")
            if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ValueError(f"file path {path!r} must be relative, without '.' or '..'")
            if path in ("manifest.json", "manifest.sig"):
                raise ValueError(f"{path} cannot be listed as a job file")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{path}: sha256 must be 64 lowercase hex digits")
        return files


class Status(str, enum.Enum):
    """Where a job is. The last seven are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED_WALLTIME = "killed_walltime"
    KILLED_MEMORY = "killed_memory"
    KILLED_OUTPUT = "killed_output"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)


class RejectReason(str, enum.Enum):
    """Why a bundle was refused before anything ran."""

    BAD_BUNDLE = "bad_bundle"
    MALFORMED_MANIFEST = "malformed_manifest"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    MISSING_FILE = "missing_file"
    FILE_MISMATCH = "file_mismatch"
    UNLISTED_FILE = "unlisted_file"
    LIMITS_EXCEEDED = "limits_exceeded"
    DUPLICATE_ID = "duplicate_id"
    NO_SPACE = "no_space"
    WRONG_DEVICE = "wrong_device"
    EXPIRED = "expired"
    REPLAYED = "replayed"


class JobRejected(AgentError):
    """A bundle refused before start; ``reason`` is the status' machine-readable code."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


class Usage(BaseModel):
    """Resources a job used, read from its cgroup and its output files. ``output_bytes``: allocated bytes
    (st_blocks x 512) of its logs and of the files and directories it made; ``output_inodes``: how many."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    memory_peak_bytes: int = 0
    output_bytes: int = 0
    output_inodes: int = 0
    pids_limit_hits: int = 0
    oom_kills: int = 0
    frozen_s: float = 0.0
    heat_reused_wh: float = Field(0.0, ge=0, description="of energy_wh, heat the room needed, Wh (carbon.py)")
    emitted_g: float = Field(0.0, ge=0, description="grid emissions of energy_wh, gCO2e (carbon.py)")
    avoided_g: float = Field(0.0, ge=0, description="heating emissions the reused heat avoided, gCO2e")
    energy_wh: float = Field(0.0, ge=0, description="electrical energy attributed to the job, Wh (jobs/energy.py)")


class JobRecord(BaseModel):
    """A job as the runner, the CLI and the sync layer see it; saved as ``status.json``."""

    id: str
    status: Status = Status.QUEUED
    reason: str | None = Field(None, description="reject code, or what killed it")
    detail: str | None = None
    exit_code: int | None = Field(None, description="negative: killed by that signal")
    priority: int = 0
    cores: int = 1
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    checkpoints: int = 0
    signed: bool = False
    acked: bool = False
    reported: str | None = Field(None, description="the last status published to the platform")
    disk_limits: str | None = Field(None, description="how its disk limits were kept: kernel (a filesystem of "
                                    "its own, jobfs.py) or user_space: <why> (degraded: polling only); None: not run")
    usage: Usage = Field(default_factory=Usage)

    def summary(self) -> dict[str, Any]:
        """One line of ``jobs list``."""
        return {"id": self.id, "status": self.status.value, "reason": self.reason, "exit_code": self.exit_code,
                "cpu_s": round(self.usage.cpu_s, 2), "wall_s": round(self.usage.wall_s, 2)}
