"""The local API's methods. Views are open to anyone who can reach the socket (mode 0660: root and the
technicians' group); changes need root or the privileged group (`api.privileged_group`), and every change
is logged with the peer's pid, uid and gid."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from qrad_agent.api.server import ApiError, Handler, Peer
from qrad_agent.log import LEVELS, recent
from qrad_agent.ops.auth import is_privileged
from qrad_agent.ops.explain import explain_power
from qrad_agent.ops.field import FireTest, identify
from qrad_agent.ops.selftest import as_json, run_selftest
from qrad_agent.ops.status import build_status

log = structlog.get_logger(component="api")


def build(agent: Any) -> dict[str, Handler]:
    """Method name -> handler(params, peer) for ``agent``."""

    def change(name: str, action):
        def handler(params: dict[str, Any], peer: Peer) -> Any:
            if not is_privileged(peer, agent.cfg.api.privileged_group):
                log.warning("change refused", method=name, pid=peer.pid, uid=peer.uid, gid=peer.gid)
                raise ApiError(f"{name}: not allowed for uid {peer.uid} (needs root or group "
                               f"{agent.cfg.api.privileged_group or '(none configured)'})")
            log.warning("change requested", method=name, params=params, pid=peer.pid, uid=peer.uid, gid=peer.gid)
            return action(params)
        return handler

    fire = FireTest(agent)

    def thermostat_view() -> dict[str, Any]:
        t = agent.thermostat
        until = t.override_until_s
        return {**t.status(), "mode_setting": t.mode_setting,
                "override_remaining_s": None if until is None else max(0.0, until - agent.clock.monotonic())}

    def override(params: dict[str, Any]) -> dict[str, Any]:
        try:
            setpoint = float(params["setpoint_c"])
            duration = params.get("duration_s")
            duration_s = None if duration is None else float(duration)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(f"set_override: {exc}", usage=True) from exc
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise ApiError(f"set_override: the duration must be > 0 (got {duration_s:g} s); "
                           "omit it to hold until cleared", usage=True)
        try:
            agent.thermostat.set_override(setpoint, duration_s)
        except ValueError as exc:
            raise ApiError(f"set_override: {exc}", usage=True) from exc
        return thermostat_view()

    def clear(params: dict[str, Any]) -> dict[str, Any]:
        agent.thermostat.clear_override()
        return thermostat_view()

    def logs(params: dict[str, Any], peer: Peer) -> list[dict]:
        component, level = params.get("component"), params.get("level")
        known = recent.components()
        if component is not None and component not in known:
            raise ApiError(f"unknown component {component!r}; known: {', '.join(known)}", usage=True)
        if level is not None and level not in LEVELS:
            raise ApiError(f"unknown level {level!r}; known: {', '.join(LEVELS)}", usage=True)
        since = None
        if params.get("since_s") is not None:
            since = datetime.now(UTC) - timedelta(seconds=float(params["since_s"]))
        return recent.query(component, level, int(params.get("limit", 200)), int(params.get("after_seq", 0)),
                            since)

    handlers: dict[str, Handler] = {
        "status": lambda params, peer: build_status(agent),
        "sensors": lambda params, peer: agent.hub.status(),
        "power_explain": lambda params, peer: explain_power(agent),
        "selftest": lambda params, peer: as_json(run_selftest(agent)),
        "logs": logs,
        "autotune_status": lambda params, peer: agent.tuner.status(),
        "fire_test_status": lambda params, peer: fire.status(),
        "set_override": change("set_override", override),
        "clear_override": change("clear_override", clear),
    }
    def reset_alarm(params: dict[str, Any]) -> dict[str, Any]:
        code = str(params.get("code", "fire_alarm"))
        if not agent.reset_alarm(code, by="local API"):
            latched = sorted(c for c in agent.safety.conditions if c in agent.safety.LATCHED)
            raise ApiError(f"no latched alarm {code!r}; latched now: {', '.join(latched) or 'none'}"
                           + (f" (qrad-agent reset-alarm {latched[0]})" if latched else ""))
        return agent.safety.status()

    handlers["reset_alarm"] = change("reset_alarm", reset_alarm)
    handlers["identify"] = change("identify", lambda params: identify(agent, params))
    handlers["fire_test"] = change("fire_test", fire.start)
    for name, action in agent.extra_changes().items():
        handlers[name] = change(name, action)
    return handlers
