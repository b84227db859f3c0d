"""Typed, read-only views of the heater's parts for what only inspects them: status, selftest, power
explain and the platform reporter. Nothing that holds a `HeaterParts` writes power through it: changes go
through `qrad_agent.ops.commands.Commands`, power through the authority (power/authority.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig
from qrad_agent.control.thermostat import Thermostat
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sensing.hub import SensorHub

if TYPE_CHECKING:
    from qrad_agent.jobs.energy_monitor import EnergyMonitor
    from qrad_agent.jobs.runner import JobRunner


@dataclass
class RunInfo:
    """Facts about this run, set by the supervisor and the CLI: ``started_at`` (loop monotonic s, unix s),
    ``config_path`` (None: built in memory), ``code_hash_at_start`` (ops/selftest.code_hash)."""

    started_at: tuple[float, float] | None = None
    config_path: Path | None = None
    code_hash_at_start: str | None = None


@dataclass(frozen=True)
class HeaterParts:
    """The parts inspected: ``jobs`` and ``energy`` are None where jobs are disabled."""

    cfg: AgentConfig
    clock: Clock
    hub: SensorHub
    power: PowerManager
    safety: SafetyLayer
    thermostat: Thermostat
    jobs: JobRunner | None = None
    energy: EnergyMonitor | None = None
    run: RunInfo = field(default_factory=RunInfo)
