"""The ``[update]`` configuration section: where releases live, the release key, the health check."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UpdateConfig(BaseModel):
    """Signed updates (docs/update.md). Unknown keys are errors.

    ``root``: the install root (releases/, current, previous); ``release_public_key``: the Ed25519 key that
    signs update bundles (PEM or raw 32 bytes), never the jobs key; None: every update is refused.
    ``restart``: "systemd" restarts ``systemd_units``; "supervisor" signals the stand-in (`qrad-agent
    supervise`) through ``<root>/supervisor.pid``. ``base_site_packages``: lab and tests only: the new
    virtual environment takes its dependencies from this site-packages directory (a .pth line) and the
    bundle need only hold the agent's wheel.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Path("/opt/qrad-agent")
    release_public_key: Path | None = None
    python: Path = Field(Path("/usr/bin/python3"), description="interpreter of the new virtual environments")
    base_site_packages: Path | None = None
    restart: Literal["systemd", "supervisor"] = "systemd"
    systemd_units: list[str] = ["qrad-agent-launcher.service", "qrad-agent.service"]
    health_timeout_s: float = Field(180.0, gt=0, le=3600, description="restart to healthy, s")
    safety_wait_s: float = Field(3600.0, ge=0, description="longest wait for a latch or fire alarm to clear")
    drain_timeout_s: float = Field(600.0, ge=0, description="longest wait for running jobs to end")
    min_free_mb: int = Field(200, ge=0, description="free disk kept beyond 4x the bundle's size, MiB")
    probation_s: float = Field(3600.0, ge=0, description="a crash loop this soon after an update rolls it back")
    poll_s: float = Field(1.0, gt=0, le=30)
