"""Readable tables of what the local API returns, for the CLI."""

from __future__ import annotations

from typing import Any


def sensors_table(status: dict[str, Any]) -> str:
    """One line per channel: name, value, unit, age, quality, reason; then the drivers not open."""
    lines = [f"{'channel':<22}{'value':>12} {'unit':<8}{'age s':>8}  {'quality':<13}reason"]
    for name, ch in sorted(status["channels"].items()):
        value = "-" if ch["value"] is None else f"{ch['value']:.6g}"
        age = "-" if ch["age_s"] is None else f"{ch['age_s']:.1f}"
        lines.append(f"{name:<22}{value:>12} {ch['unit']:<8}{age:>8}  {ch['quality']!s:<13}{ch['reason'][:60]}")
    troubled = {n: d for n, d in status["drivers"].items() if d["state"] != "open" or d["last_error"]}
    for name, d in sorted(troubled.items()):
        lines.append(f"device {name} ({d['type']}): {d['state']}, {d['consecutive_failures']} failure(s), "
                     f"{d['reconnects']} reconnect(s); last error: {d['last_error'][:80]}")
    return "\n".join(lines)


def status_table(status: dict[str, Any]) -> str:
    """The `status` view: what the heater does and why."""
    t, p, s = status["thermostat"], status["power"], status["safety"]
    lines = [f"device      {status['device_id']}",
             f"mode        {t['mode']}  setpoint {t['setpoint_c']} °C  room {t['room_c']} °C  ({t['algorithm']})",
             f"power       demand {t['demand_w']} W  expected {p['expected_w']} W  measured {p['measured_w']} W",
             f"limited by  {t['limit_reason']}",
             f"interfaces  {' -> '.join(p['chain']) or 'none'}",
             f"safety      {'MINIMUM POWER: ' + str(s['conditions']) if s['forced_minimum'] else 'normal'}"]
    for key in ("fire", "sync", "jobs"):
        if key in status:
            lines.append(f"{key:<12}{_summary(status[key])}")
    return "\n".join(lines)


def _summary(part: Any) -> str:
    if isinstance(part, dict):
        return ", ".join(f"{k}={v}" for k, v in part.items() if not isinstance(v, (dict, list)))
    return str(part)


def logs_table(events: list[dict[str, Any]]) -> str:
    """One line per event: time, level, component, event, then the other fields."""
    lines = []
    for e in events:
        rest = {k: v for k, v in e.items() if k not in ("timestamp", "level", "component", "event", "device_id")}
        extra = " ".join(f"{k}={v}" for k, v in rest.items())
        lines.append(f"{e.get('timestamp', '')[:19]} {e.get('level', ''):<8}{e.get('component', ''):<12}"
                     f"{e.get('event', '')} {extra}".rstrip())
    return "\n".join(lines) or "(no events)"
