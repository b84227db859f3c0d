"""The local API's methods. Views are open to anyone who can reach the socket (mode 0660: root and the
technicians' group); changes need root or the privileged group (`api.privileged_group`), and every change
is logged with the peer's pid, uid and gid. Every change goes through `qrad_agent.ops.commands.Commands`, the
same surface as the platform's commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from qrad_agent.api.server import ApiError, Handler, Peer
from qrad_agent.ops.commands import Commands
from qrad_agent.log import LEVELS, recent
from qrad_agent.ops.auth import is_privileged

log = structlog.get_logger(component="api")


@dataclass(frozen=True)
class Views:
    """The read-only API methods' sources, each returning plain JSON."""

    status: Callable[[], dict[str, Any]]
    sensors: Callable[[], dict[str, Any]]
    power_explain: Callable[[], dict[str, Any]]
    selftest: Callable[[], dict[str, Any]]
    thermostat: Callable[[], dict[str, Any]]
    safety: Callable[[], dict[str, Any]]
    autotune_status: Callable[[], dict[str, Any]]
    fire_test_status: Callable[[], dict[str, Any]]


def build(commands: Commands, views: Views, privileged_group: str | None) -> dict[str, Handler]:
    """Method name -> handler(params, peer): ``views`` for anyone on the socket, ``commands`` for root and
    ``privileged_group``."""

    def change(name: str, action: Callable[[dict[str, Any]], Any]) -> Handler:
        def handler(params: dict[str, Any], peer: Peer) -> Any:
            if not is_privileged(peer, privileged_group):
                log.warning("change refused", method=name, pid=peer.pid, uid=peer.uid, gid=peer.gid)
                raise ApiError(f"{name}: not allowed for uid {peer.uid} (needs root or group "
                               f"{privileged_group or '(none configured)'})")
            log.warning("change requested", method=name, params=params, pid=peer.pid, uid=peer.uid, gid=peer.gid)
            return action(params)
        return handler

    def override(params: dict[str, Any]) -> dict[str, Any]:
        if "setpoint_c" not in params:
            raise ApiError("set_override: setpoint_c is missing", usage=True)
        commands.set_override(params["setpoint_c"], params.get("duration_s"), by="local API")
        return views.thermostat()

    def clear(params: dict[str, Any]) -> dict[str, Any]:
        commands.clear_override(by="local API")
        return views.thermostat()

    def set_mode(params: dict[str, Any]) -> dict[str, Any]:
        commands.set_mode(str(params.get("mode")), by="local API")
        return views.thermostat()

    def set_setpoint(params: dict[str, Any]) -> dict[str, Any]:
        if "setpoint_c" not in params:
            raise ApiError("set_setpoint: setpoint_c is missing", usage=True)
        commands.set_setpoint(str(params.get("mode")), params["setpoint_c"], by="local API")
        return views.thermostat()

    def set_schedule(params: dict[str, Any]) -> dict[str, Any]:
        rules = params.get("rules")
        if not isinstance(rules, list):
            raise ApiError("set_schedule: rules must be a list of {days, start, mode}", usage=True)
        commands.set_schedule(rules, by="local API")
        return views.thermostat()

    def reset_alarm(params: dict[str, Any]) -> dict[str, Any]:
        commands.reset_alarm(str(params.get("code", "fire_alarm")), by="local API")
        return views.safety()

    def cancel_job(params: dict[str, Any]) -> dict[str, Any]:
        commands.cancel_job(str(params.get("job_id")))
        return {"cancelled": True}

    def prepare_update(params: dict[str, Any]) -> dict[str, Any]:
        return {"running": commands.prepare_update(release=bool(params.get("release")))}

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
        "status": lambda params, peer: views.status(),
        "sensors": lambda params, peer: views.sensors(),
        "power_explain": lambda params, peer: views.power_explain(),
        "selftest": lambda params, peer: views.selftest(),
        "logs": logs,
        "autotune_status": lambda params, peer: views.autotune_status(),
        "fire_test_status": lambda params, peer: views.fire_test_status(),
    }
    changes: dict[str, Callable[[dict[str, Any]], Any]] = {
        "set_override": override, "clear_override": clear, "set_mode": set_mode, "set_setpoint": set_setpoint,
        "set_schedule": set_schedule, "reset_alarm": reset_alarm, "identify": commands.identify,
        "fire_test": commands.start_fire_test, "autotune": commands.autotune, "cancel_job": cancel_job,
        "prepare_update": prepare_update}
    for name, action in changes.items():
        handlers[name] = change(name, action)
    return handlers
