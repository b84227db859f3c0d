"""`selftest`: every check a technician needs on site, each with pass or fail and a detail.

Sensors (quality and freshness), redundant room temperatures, every power interface read back against
what was commanded, the control loop's timing, the clock (loop monotonic against wall), the code and
configuration on disk against what the agent started with (an update or an edit not yet applied, or files
changed under a running agent), free disk for the state directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import qrad_agent
from qrad_agent.api.fmt import number
from qrad_agent.api.views import display_step
from qrad_agent.parts import HeaterParts

MIN_FREE_DISK_MB = 100.0
MAX_PERIOD_JITTER = 0.2
"""Largest deviation of a control period from its nominal length, as a fraction of it ..."""
MAX_PERIOD_JITTER_S = 1.0
"""... or in seconds, whichever is larger (a loaded board can hold the loop up for a few hundred ms)."""
MIN_STEPS = 3
"""Control steps the loop-timing check needs (two periods) before it can judge."""
MAX_CLOCK_DRIFT = 1e-3
"""Largest relative disagreement between the loop's monotonic clock and the wall clock."""


@dataclass(frozen=True)
class Check:
    """One self-test item."""

    name: str
    ok: bool
    detail: str
    pending: bool = False
    """Too early to judge (not a failure): the detail says how long until it can."""


def code_hash() -> str:
    """sha256 over the agent's installed Python sources (first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(Path(qrad_agent.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_selftest(parts: HeaterParts, code_hash_now: str | None = None) -> list[Check]:
    """Every check, on the running heater's ``parts``. ``code_hash_now``: `code_hash` of the installed
    sources, computed by the caller off the event loop (tens to hundreds of ms of file reads); None: here."""
    checks = []
    status = parts.hub.status()
    for name, ch in sorted(status["channels"].items()):
        period = parts.hub.specs[name].period_s
        fresh = ch["age_s"] is not None and ch["age_s"] <= 3 * period + 5
        ok = ch["quality"] == "ok" and fresh
        value = number(ch["value"], ch["unit"], display_step(ch)) if ch["value"] is not None else f"- {ch['unit']}"
        age = "no reading yet" if ch["age_s"] is None else f"age {ch['age_s']:.1f} s"
        checks.append(Check(f"sensor {name}", ok, f"{value}, {ch['quality'] or 'no reading'}, {age}"
                            f"{', ' + ch['reason'] if ch['reason'] else ''}"))
    choice = parts.hub.best(parts.cfg.thermostat.room_channels, parts.cfg.thermostat.stale_after_s)
    checks.append(Check("room temperature sensors agree", choice.reading is not None and not choice.notes,
                        "; ".join(choice.notes) or choice.reason or "agree"))
    for name, (ok, detail) in parts.power.verify().items():
        checks.append(Check(f"actuator {name}", ok, detail))
    checks.append(Check("power interfaces", bool(parts.power.actuators),
                        " -> ".join(parts.power.chain_names()) or "no interface left"))
    conditions = dict(parts.safety.conditions)
    checks.append(Check("no safety condition holds", not conditions,
                        "; ".join(f"{c}: {r}" for c, r in conditions.items()) or "power may follow demand"))
    checks.append(_loop_timing(parts))
    checks.append(_clock(parts))
    checks.append(_code_unchanged(parts, code_hash_now))
    checks.append(_config_unchanged(parts))
    checks.append(_disk(parts.cfg.state_dir))
    output = parts.safety.alarm_output_path()
    if output is not None:
        presence = "present" if output.exists() else "missing: the fire alarm cannot be signalled"
        checks.append(Check("alarm output line", output.exists(), f"{output} {presence}"))
    if parts.jobs is not None:
        state = parts.jobs.launcher_state()
        checks.append(Check("jobs launcher", not state.startswith("unreachable"), state))
    return checks


def config_hash(cfg: Any) -> str:
    """sha256 of the effective configuration, canonical JSON (first 16 hex digits)."""
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _code_unchanged(parts: HeaterParts, now: str | None) -> Check:
    started = parts.run.code_hash_at_start
    now = now or code_hash()
    if started is None:
        return Check("code unchanged since start", True, f"{now} (qrad-agent {qrad_agent.__version__})")
    return Check("code unchanged since start", now == started,
                 f"{now} (qrad-agent {qrad_agent.__version__})" if now == started else
                 f"installed sources {now} differ from the running {started}: restart to run what is installed")


def _config_unchanged(parts: HeaterParts) -> Check:
    running = config_hash(parts.cfg)
    path = parts.run.config_path
    if path is None:
        return Check("config unchanged since start", True, f"{running} (no file: built in memory)")
    from qrad_agent.config import load_config
    from qrad_agent.errors import ConfigError

    try:
        on_disk = config_hash(load_config(path))
    except (ConfigError, OSError) as exc:
        return Check("config unchanged since start", False, f"{path} no longer loads: {str(exc).splitlines()[0]}")
    return Check("config unchanged since start", on_disk == running,
                 running if on_disk == running else f"{path} changed since start ({on_disk} on disk, {running} "
                 "running): restart to apply it")


def _loop_timing(parts: HeaterParts) -> Check:
    steps = list(parts.thermostat.step_times_s)
    period = parts.thermostat.cfg.period_s
    if len(steps) < MIN_STEPS:
        wait_s = (MIN_STEPS - len(steps)) * period
        return Check("control loop timing", True, f"{len(steps)} control step(s) so far: it can judge after "
                     f"{MIN_STEPS}, in about {wait_s:.0f} s", pending=True)
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    worst_s = max(abs(g - period) for g in gaps)
    allowed_s = max(MAX_PERIOD_JITTER * period, MAX_PERIOD_JITTER_S)
    return Check("control loop timing", worst_s <= allowed_s,
                 f"{len(gaps)} periods of {period:g} s, worst deviation {worst_s:.3f} s (allowed {allowed_s:g} s)")


def _clock(parts: HeaterParts) -> Check:
    loop_s, wall_s = parts.clock.monotonic(), time.time()
    if parts.run.started_at is None:
        return Check("clock", True, "not started yet", pending=True)
    start_loop_s, start_wall_s = parts.run.started_at
    span = loop_s - start_loop_s
    if span < 10:
        return Check("clock", True, f"running {span:.0f} s: it can compare after 10 s", pending=True)
    drift = abs((wall_s - start_wall_s) - span) / span
    return Check("clock", drift <= MAX_CLOCK_DRIFT,
                 f"wall clock moved {wall_s - start_wall_s:.1f} s while the loop clock moved {span:.1f} s")


def _disk(state_dir: Path) -> Check:
    probe = state_dir if state_dir.exists() else state_dir.parent
    try:
        free_mb = shutil.disk_usage(probe).free / 2**20
    except OSError as exc:
        return Check("free disk for state and outbox", False, f"{probe}: {exc}")
    return Check("free disk for state and outbox", free_mb >= MIN_FREE_DISK_MB, f"{free_mb:.0f} MB free at {probe}")


def as_json(checks: list[Check]) -> dict[str, Any]:
    """Plain-JSON report."""
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def as_table(report: dict[str, Any]) -> str:
    """Readable report."""
    lines = [f"{'WAIT' if c.get('pending') else 'PASS' if c['ok'] else 'FAIL'}  {c['name']:<36} {c['detail']}"
             for c in report["checks"]]
    waiting = sum(bool(c.get("pending")) for c in report["checks"])
    lines.append(f"self-test {'passed' if report['ok'] else 'FAILED'}: "
                 f"{sum(not c['ok'] for c in report['checks'])} failure(s)"
                 + (f", {waiting} check(s) too early to judge (WAIT: run it again later)" if waiting else ""))
    return "\n".join(lines)
