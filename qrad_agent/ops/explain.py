"""`power explain`: the chain from setpoint to what the kernel holds, read back from sysfs."""

from __future__ import annotations

from typing import Any

from qrad_agent.api.fmt import number, plain
from qrad_agent.control.thermostat import Thermostat
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer


def explain_power(thermostat: Thermostat, power: PowerManager, safety: SafetyLayer) -> dict[str, Any]:
    """Setpoint and room temperature -> controller terms -> heat demand -> curve level -> interface states.

    Every value under ``applied`` is read back from sysfs now.
    """
    controller = thermostat.controller
    terms = getattr(getattr(controller, "pid", None), "terms", None)
    level = power.level
    return {
        "mode": thermostat.status()["mode"],
        "setpoint_c": thermostat.setpoint_c,
        "room_c": thermostat.pv_c,
        "controller": thermostat.cfg.algorithm,
        "terms_w": None if terms is None else {"p": terms.p_w, "i": terms.i_w, "d": terms.d_w},
        "demand_w": thermostat.demand_w,
        "limit_reason": thermostat.limit_reason,
        "safety": safety.status(),
        "curve": {"level": level, "expected_w": power.curve.power_w(level), "samples": power.curve.samples},
        "measured_w": power.measured_w,
        "chain": power.chain_names(),
        "failed_interfaces": power.status()["failed"],
        "applied": power.readback(),
    }


def explain_table(data: dict[str, Any]) -> str:
    """Readable form of `explain_power`: limits in GHz, W and % of a CPU period, no Python reprs."""
    safety = data["safety"]
    lines = [f"mode {data['mode']}  setpoint {_or(number(data['setpoint_c'], '°C'), 'mode off')}  "
             f"room {_or(number(data['room_c'], '°C'), 'no valid reading at the last control step')}  "
             f"({data['controller']})"]
    if data["terms_w"]:
        t = data["terms_w"]
        lines.append(f"PID terms: P {number(t['p'], 'W')} + I {number(t['i'], 'W')} + D {number(t['d'], 'W')}")
    lines.append(f"heat demand {number(data['demand_w'], 'W')}  (limited by: {data['limit_reason']})")
    if safety["conditions"]:
        lines.append("SAFETY holds minimum power: " + "; ".join(f"{c} ({r})" for c, r in safety["conditions"].items()))
    c = data["curve"]
    measured = (number(data["measured_w"], "W") + " (mean of the last control period)"
                if data["measured_w"] is not None else "- (measured from the third control step on)")
    lines.append(f"learned curve: level {c['level']:.3f} -> expected {number(c['expected_w'], 'W')} "
                 f"({c['samples']} samples); measured {measured}")
    lines.append(f"interfaces in use: {' -> '.join(data['chain']) or 'none'}")
    for name, error in data["failed_interfaces"].items():
        lines.append(f"  dropped {name}: {error}")
    for name, values in data["applied"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k} {_limit(name, k, v)}" for k, v in values.items()))
    return "\n".join(lines)


def _or(text: str, reason: str) -> str:
    return text if text != "-" else f"- ({reason})"


def _limit(interface: str, key: str, value: Any) -> str:
    """One read-back limit with its unit: cpufreq kHz -> GHz, RAPL µW -> W, cgroup quota -> % of CPUs."""
    if key == "error":
        return f"unreadable: {value}"
    if interface == "cpufreq" and isinstance(value, int):
        return f"{value / 1e6:.2f} GHz max"
    if interface == "rapl" and isinstance(value, int):
        return f"{value / 1e6:.1f} W limit"
    if key == "cpu.max" and isinstance(value, str):
        quota, _, period = value.partition(" ")
        if quota == "max":
            return "no quota"
        try:
            return f"{100 * int(quota) / int(period):.1f} % of one CPU ({value})"
        except ValueError:
            return value
    return plain(value)
