"""`power explain`: the chain from setpoint to what the kernel holds, read back from sysfs."""

from __future__ import annotations

from typing import Any


def explain_power(agent: Any) -> dict[str, Any]:
    """Setpoint and room temperature -> controller terms -> heat demand -> curve level -> interface states.

    ``agent`` is the running Agent; every value under ``applied`` is read back from sysfs now.
    """
    thermostat, power = agent.thermostat, agent.power
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
        "safety": agent.safety.status(),
        "curve": {"level": level, "expected_w": power.curve.power_w(level), "samples": power.curve.samples},
        "measured_w": power.measured_w,
        "chain": power.chain_names(),
        "failed_interfaces": power.status()["failed"],
        "applied": power.readback(),
    }


def explain_table(data: dict[str, Any]) -> str:
    """Readable form of `explain_power`."""
    lines = [f"mode {data['mode']}  setpoint {data['setpoint_c']} °C  room {data['room_c']} °C  "
             f"({data['controller']})"]
    if data["terms_w"]:
        t = data["terms_w"]
        lines.append(f"PID terms: P {t['p']:.1f} W + I {t['i']:.1f} W + D {t['d']:.1f} W")
    lines.append(f"heat demand {data['demand_w']:.1f} W  (limited by: {data['limit_reason']})")
    if data["safety"]["forced_minimum"]:
        lines.append(f"SAFETY holds minimum power: {data['safety']['conditions']}")
    c = data["curve"]
    lines.append(f"learned curve: level {c['level']:.3f} -> expected {c['expected_w']:.1f} W "
                 f"({c['samples']} samples); measured {data['measured_w']} W")
    lines.append(f"interfaces in use: {' -> '.join(data['chain']) or 'none'}")
    for name, error in data["failed_interfaces"].items():
        lines.append(f"  dropped {name}: {error}")
    for name, values in data["applied"].items():
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)
