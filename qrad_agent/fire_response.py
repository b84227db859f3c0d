"""The response to a fire ALARM, and the heater's thermal protection, wired to the safety layer.

On ALARM (`FireResponse.on_alarm`, called synchronously by the detector): compute power to its minimum
through the safety layer at once (jobs frozen, P-states and RAPL at minimum, the thermostat ignored), the
local alarm output on, the decision kept in the agent's state file, and an alarm handed to the sync outbox
(retained, QoS 1) by a task of its own, so that nothing on the way to minimum power waits on storage or
the network. The ALARM latches until `reset`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog

from qrad_agent.fire.config import ThermalProtectionConfig
from qrad_agent.fire.thermal_protection import ThermalProtection
from qrad_agent.power.manager import PowerManager
from qrad_agent.sensing.hub import SensorHub

log = structlog.get_logger(component="fire")

CONDITION = "fire_alarm"


class SafePath(Protocol):
    """What the fire response needs of the safety layer."""

    @property
    def conditions(self) -> dict[str, str]: ...

    def enter_safe_state(self, condition: str, reason: str) -> None: ...

    def clear(self, condition: str) -> None: ...

    def alarm_output(self, on: bool) -> bool | None: ...


class AlarmOutbox(Protocol):
    """Where alarms go to the platform (the sync client's outbox)."""

    def enqueue(self, kind: Any, message: Any) -> Coroutine[Any, Any, Any]: ...


class FireResponse:
    """What the agent does on a fire ALARM, and how it is reset.

    ``safety``: the safe-state path and the alarm output; ``save_state``: flush the agent's state file (never
    raises); ``outbox``: the sync outbox now, or None without sync; ``reset_detector(who)``: back to NORMAL.
    """

    def __init__(self, safety: SafePath, save_state: Callable[[], None],
                 outbox: Callable[[], AlarmOutbox | None], reset_detector: Callable[[str], None]) -> None:
        self.safety = safety
        self.save_state = save_state
        self.outbox = outbox
        self.reset_detector = reset_detector
        self.latched: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task] = set()

    def on_alarm(self, decision: Any) -> None:
        """Safe power first, then the local signal, the state file and the platform. Never awaits."""
        reason = f"fire ALARM: {decision.reason}"
        self.safety.enter_safe_state(CONDITION, reason)
        self.safety.alarm_output(True)
        self.latched = decision.as_dict()
        self.save_state()
        self.publish("raised", decision.reason)

    def publish(self, state: str, detail: str) -> None:
        """Hand the alarm to the outbox in the background (it survives a broker outage)."""
        sync = self.outbox()
        if sync is None:
            return
        from qrad_agent.sync.contract import AlarmMessage, Kind

        message = AlarmMessage(code=CONDITION, severity="critical", state=state, latched=state == "raised",
                               detail=detail[:500], active=[CONDITION] if state == "raised" else [])
        task = asyncio.get_running_loop().create_task(sync.enqueue(Kind.ALARM, message), name="fire:publish")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (bounded) for the alarm messages handed to the outbox: the supervisor's stop, before the
        outbox closes, so an alarm raised just before stop is stored, not dropped."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    def reset(self, by: str) -> bool:
        """End a latched ALARM (an authorised command or a technician); False if none is latched."""
        if self.latched is None and CONDITION not in self.safety.conditions:
            return False
        self.reset_detector(by)
        self.latched = None
        self.safety.clear(CONDITION)
        self.safety.alarm_output(False)
        self.save_state()
        self.publish("cleared", f"reset by {by}")
        log.warning("fire alarm reset", by=by)
        return True

    def restore(self, latched: dict[str, Any] | None) -> None:
        """A latched ALARM from before a restart holds power at minimum again until reset."""
        if latched:
            self.latched = latched
            self.safety.enter_safe_state(CONDITION, f"fire ALARM latched before restart: "
                                                          f"{latched.get('reason', '')}")
            self.safety.alarm_output(True)


def thermal_check(cfg: ThermalProtectionConfig, surface_channel: str, room_channels: list[str],
                  stale_after_s: float, hub: SensorHub, power: PowerManager) -> Any:
    """A safety check (t_s -> new faults) running the heater's thermal protection on ``hub``'s readings of
    ``surface_channel`` and the room, against what ``power`` commands and measures. The returned function
    carries its ``protection`` (reset by reset-alarm)."""
    protection = ThermalProtection(cfg)

    def thermal_protection(t_s: float) -> dict[str, str]:
        reading = hub.latest.get(surface_channel)
        surface_c = reading.value if reading is not None and reading.ok else None
        room = hub.best(room_channels, stale_after_s).reading
        commanded_w = power.curve.power_w(power.level)  # measured_w lags it by a control period
        surface_t_s = None if reading is None else reading.t_s
        return protection.update(t_s, power.measured_w, surface_c, surface_t_s, None,
                                 None if room is None else room.value, commanded_w)

    thermal_protection.protection = protection  # type: ignore[attr-defined]
    return thermal_protection
