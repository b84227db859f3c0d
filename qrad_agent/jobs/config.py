"""The ``[jobs]`` configuration section: where jobs live, how many run, the largest limits a job may ask.

Follows qrad_agent.config: unknown keys are errors, values frozen after load. The agent's AgentConfig gains
``jobs: JobsConfig = JobsConfig()``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeBind(_Section):
    """A host path shown read-only inside every sandbox (the job runtime: interpreter, libraries)."""

    host: Path
    sandbox: Path


class JobsConfig(_Section):
    """Sandboxed jobs. Limits are the heater's maxima: a manifest asking for more is rejected.

    ``cgroup``: the jobs' parent cgroup. On cgroup v2 it is that directory (``power.jobs_cgroup``); on a
    v1-only machine its parent is taken as the hierarchies' mount root and its name is created in each
    controller hierarchy (``/sys/fs/cgroup/{cpu,cpuacct,memory,pids,freezer}/qrad-jobs``).
    ``runtime``: read-only binds for the interpreter when it is not in /usr (Debian: python3 + python3-numpy
    need none); ``python`` is the interpreter path inside the sandbox; ``env`` is added to every job.
    """

    enabled: bool = True
    jobs_dir: Path = Path("/var/lib/qrad-agent/jobs")
    cgroup: Path = Path("/sys/fs/cgroup/qrad-jobs")
    public_key: Path | None = Field(None, description="platform Ed25519 public key (PEM or raw 32 bytes)")
    allow_unsigned: bool = False
    job_user: str = Field("qrad-job", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    create_job_user: bool = Field(True, description="useradd --system the job user when it is missing")
    launcher_socket: Path | None = Field(
        None, description="socket of the privileged launcher service (qrad-agent launcher); unset: the agent "
                          "starts sandboxes itself and needs CAP_SETUID/SETGID/KILL/CHOWN and namespaces")
    bwrap: Path = Path("/usr/bin/bwrap")
    python: Path = Path("/usr/bin/python3")
    runtime: list[RuntimeBind] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cpus: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1024)
    slots: int | None = Field(None, ge=1, le=1024, description="concurrent cores for jobs; default cpus")
    max_cores: int = Field(64, ge=1)
    max_memory_mb: int = Field(4096, ge=16)
    max_walltime_s: float = Field(7 * 86400.0, gt=0)
    max_output_mb: int = Field(1024, ge=1)
    max_pids: int = Field(256, ge=8, le=65536)
    max_bundle_mb: int = Field(512, ge=1)
    tmp_mb: int = Field(256, ge=1, description="size of the private /tmp (tmpfs, counted as job memory)")
    checkpoint_grace_s: float = Field(30.0, gt=0, le=600)
    disk_reserve_mb: int = Field(1024, ge=0, description="free space kept for the agent (state, outbox) on the "
                                 "jobs' filesystem: no job starts below it; the job that wrote most is stopped")
    inode_reserve: int = Field(20000, ge=0, description="free inodes kept for the agent on the jobs' filesystem: "
                               "no job is accepted or started below it; the biggest writer is stopped")
    max_output_inodes: int = Field(20000, ge=16, description="files and directories one job may make; over it the "
                                   "job is stopped and its output deleted")
    energy_interval_s: float = Field(10.0, gt=0, le=600, description="per-job energy accounting period")
    mains_energy_channel: str | None = Field(None, description="sensor channel of the mains meter's "
                                             "cumulative energy, kWh (e.g. an SDM120's energy channel)")
    grid_g_per_kwh: float | None = Field(None, ge=0, le=5000, description="grid carbon intensity, gCO2e/kWh, "
                                         "for carbon facts (the platform may send a newer value); None: none")
    displaced_heating_g_per_kwh: float | None = Field(None, ge=0, le=5000, description="emissions of the heating "
                                                      "the heater displaces, gCO2e/kWh of heat; None: the grid's")
    comfort_band_k: float = Field(0.5, ge=0, le=5, description="heat counts as reused up to setpoint + this, K")
    poll_s: float = Field(0.2, gt=0, le=10, description="limit and status polling period")
    deadman_timeout_s: float = Field(
        10.0, ge=0.5, le=600, description="with a launcher service: the agent beats its dead-man every "
        "timeout/5 s from its event loop; silent this long (a hung or stopped agent), or gone, and the "
        "launcher freezes every job and puts their CPU quota at its minimum (s)")
    result_retention_s: float = Field(7 * 86400.0, gt=0, description="a reported result's files are deleted "
                                      "after this long if the platform has not acknowledged it (ack_job)")

    @model_validator(mode="after")
    def _absolute_paths(self) -> JobsConfig:
        for name in ("jobs_dir", "cgroup", "bwrap", "python", "launcher_socket"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                raise ValueError(f"{name} must be an absolute path, not {str(value)!r}")
        return self

    @model_validator(mode="after")
    def _slots_fit(self) -> JobsConfig:
        if self.slots is not None and self.slots > self.cpus:
            raise ValueError(f"slots ({self.slots}) must not exceed cpus ({self.cpus})")
        return self

    @property
    def total_slots(self) -> int:
        return self.slots or self.cpus
