"""`status`: the agent's status with what a technician asks first: uptime, the room channel the thermostat
uses now (and why it passed over the ones before it), the last warnings, and one verdict.

The verdict is computed from the present state only, one of "ok", "degraded: <what>" or "safe state:
<why>", so it cannot contradict the lines beside it. Values that belong to the last control step (the
demand, the measured mean power of its period) carry that step's age.
"""

from __future__ import annotations

from typing import Any

from qrad_agent.log import recent
from qrad_agent.parts import HeaterParts

RECENT_EVENTS = 5
"""How many of the latest warnings and errors `status` shows."""


def build_status(status: dict[str, Any], parts: HeaterParts) -> dict[str, Any]:
    """The components' ``status`` plus ``uptime_s``, ``room``, ``control`` (age of the last step, s),
    ``disabled`` (optional components switched off and the key that does it), ``events`` and ``verdict``."""
    now_s = parts.clock.monotonic()
    started = parts.run.started_at
    status["uptime_s"] = None if started is None else round(now_s - started[0], 1)
    status["room"] = room_choice(parts)
    steps = parts.thermostat.step_times_s
    status["control"] = {"period_s": parts.thermostat.cfg.period_s,
                         "last_step_age_s": round(now_s - steps[-1], 1) if steps else None}
    status["disabled"] = disabled_components(parts.cfg)
    status["events"] = recent.query(level="warning", limit=RECENT_EVENTS)
    status["verdict"] = verdict(status)
    return status


def room_choice(parts: HeaterParts) -> dict[str, Any]:
    """The room temperature the thermostat would take now: channel, value (°C), and why the channels
    preferred to it were passed over; channel None with the reason when none is usable."""
    channels = parts.cfg.thermostat.room_channels
    choice = parts.hub.best(channels, parts.cfg.thermostat.stale_after_s)
    if choice.reading is None:
        return {"channel": None, "value_c": None, "reason": choice.reason, "skipped": [], "notes": list(choice.notes)}
    return {"channel": choice.reading.channel, "value_c": choice.reading.value, "reason": "",
            "preferred": channels[0], "skipped": list(choice.skipped), "notes": list(choice.notes)}


def disabled_components(cfg: Any) -> dict[str, str]:
    """Optional components that are off, each with the configuration that turns it off."""
    off = {}
    if not cfg.jobs.enabled:
        off["jobs"] = "[jobs] enabled = false"
    if cfg.sync is None:
        off["sync"] = "no [sync] section"
    if not cfg.fire.enabled:
        off["fire"] = "[fire] enabled = false"
    return off


def verdict(status: dict[str, Any]) -> str:
    """One line: "safe state: why", "starting: what" (the first control periods), "degraded: what; what",
    or "ok"."""
    safety = status["safety"]
    if safety.get("conditions"):
        latched = set(safety.get("latched") or ())
        return "safe state: " + "; ".join(
            f"{c} ({r}{'; latched: qrad-agent reset-alarm ' + c + ' once its cause is gone' if c in latched else ''})"
            for c, r in safety["conditions"].items())
    forced = status["power"].get("forced_reason")
    problems = []
    if forced:
        problems.append(f"power held at minimum: {forced}")
    room = status["room"]
    if room["channel"] is None:
        problems.append(f"no valid room temperature ({room['reason']})")
    elif room["skipped"]:
        problems.append(f"room temperature from {room['channel']}: {'; '.join(room['skipped'])}")
    if status["power"].get("failed"):
        problems.append("power interface(s) dropped: " + ", ".join(status["power"]["failed"]))
    if not status["power"].get("chain"):
        problems.append("no power interface")
    fire = status.get("fire")
    if fire and fire.get("state") == "fault":
        problems.append(f"fire detection fault: {fire_reason(fire)}")
    sync = status.get("sync")
    if sync is not None and not sync.get("connected"):
        problems.append(f"platform not connected ({sync.get('broker')})")
    bad = sorted(n for n, ch in status["sensors"]["channels"].items() if ch["quality"] not in ("ok", None))
    if bad:
        problems.append(f"{len(bad)} channel(s) not ok: {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}")
    periodic = status.get("selftest") or {}
    if periodic.get("failed"):
        problems.append("self-test failed: " + ", ".join(map(str, periodic["failed"])))
    if safety.get("latch_error"):
        problems.append(f"latched conditions not saved: {safety['latch_error']}")
    logging = status.get("logging") or {}
    if logging.get("dropped"):
        problems.append(f"{logging['dropped']} log line(s) dropped ({logging.get('last_error') or 'stderr'})")
    jobs = status.get("jobs")
    if jobs and str(jobs.get("launcher", "")).startswith("unreachable"):
        problems.append(f"jobs launcher {jobs['launcher']}")
    control = status.get("control", {})
    limit = str(status["thermostat"].get("limit_reason", ""))
    age_s, period_s = control.get("last_step_age_s"), control.get("period_s")
    if room["channel"] is not None and limit.startswith("no valid room temperature") and age_s is not None:
        next_s = max(0.0, period_s - age_s) if period_s else 0.0
        problems.insert(0, f"the thermostat had no room temperature at its last step; it takes "
                           f"{room['channel']} at its next, in about {next_s:.0f} s")
        uptime_s = status.get("uptime_s")
        if uptime_s is not None and period_s and uptime_s < 2 * period_s + 5:
            return "starting: " + "; ".join(problems)
    return "degraded: " + "; ".join(problems) if problems else "ok"


def fire_reason(fire: dict[str, Any]) -> str:
    """The reason of the fire detector's present decision ("" before its first)."""
    decision = fire.get("decision") or {}
    return str(decision.get("reason") or "")
