"""The local API's methods. Views are open to anyone who can reach the socket (mode 0660: root and the
technicians' group); changes need root or the privileged group (`api.privileged_group`), and every change
is logged with the peer's pid, uid and gid."""

from __future__ import annotations

from typing import Any

import structlog

from qrad_agent.api.server import ApiError, Handler, Peer
from qrad_agent.log import recent
from qrad_agent.ops.auth import is_privileged
from qrad_agent.ops.explain import explain_power
from qrad_agent.ops.field import fire_test, identify
from qrad_agent.ops.selftest import as_json, run_selftest

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

    def override(params: dict[str, Any]) -> dict[str, Any]:
        try:
            setpoint = float(params["setpoint_c"])
            duration = params.get("duration_s")
            agent.thermostat.set_override(setpoint, None if duration is None else float(duration))
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(f"set_override: {exc}") from exc
        return agent.thermostat.status()

    def clear(params: dict[str, Any]) -> dict[str, Any]:
        agent.thermostat.clear_override()
        return agent.thermostat.status()

    def logs(params: dict[str, Any], peer: Peer) -> list[dict]:
        return recent.query(params.get("component"), params.get("level"), int(params.get("limit", 200)))

    handlers: dict[str, Handler] = {
        "status": lambda params, peer: agent.status(),
        "sensors": lambda params, peer: agent.hub.status(),
        "power_explain": lambda params, peer: explain_power(agent),
        "selftest": lambda params, peer: as_json(run_selftest(agent)),
        "logs": logs,
        "autotune_status": lambda params, peer: agent.tuner.status(),
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
    handlers["fire_test"] = change("fire_test", lambda params: fire_test(agent, params))
    for name, action in agent.extra_changes().items():
        handlers[name] = change(name, action)
    return handlers
