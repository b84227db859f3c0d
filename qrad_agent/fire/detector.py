"""The fire detector component: hub readings and the microphone stream into the engine, ALARM out.

``FireDetector.run`` owns two named tasks: ``fire:audio`` drains the microphone queue block by block
(an alarm cycle confirmed by a block is evaluated at once, not at the next period) and ``fire:sensors``
evaluates every ``period_s`` from the hub's latest readings. On the transition into ALARM, ``on_alarm``
is called synchronously with the decision (wire it to ``SafetyLayer.enter_safe_state``: it must not
await). A failing ``on_alarm`` is logged and never stops detection. ALARM latches until ``reset``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import structlog

from qrad_agent.clock import Clock
from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.engine import FireEngine, FireInputs
from qrad_agent.fire.fusion import Decision, FireState

log = structlog.get_logger(component="fire")

AudioQueue = asyncio.Queue[tuple[float, np.ndarray]]


class Hub(Protocol):
    """What the detector needs from qrad_agent.sensing.hub.SensorHub."""

    channels: dict[str, Any]

    def best(self, names: list[str], stale_after_s: float) -> Any: ...


class FireDetector:
    """Fire detection on one heater; ``status()`` is plain JSON; ``reset(authorised)`` ends an ALARM."""

    def __init__(self, cfg: FireConfig, hub: Hub, audio_queue_provider: Callable[[], AudioQueue | None],
                 power_w_provider: Callable[[], float | None], clock: Clock,
                 on_alarm: Callable[[Decision], None]) -> None:
        self.cfg = cfg
        self.hub = hub
        self.audio_queue_provider = audio_queue_provider
        self.power_w_provider = power_w_provider
        self.clock = clock
        self.on_alarm = on_alarm
        self.engine = FireEngine(cfg)
        self.queue: AudioQueue | None = None
        self.last_block_s: float | None = None
        self.decision: Decision | None = None
        self.alarm_calls = 0

    async def run(self) -> None:
        """Detect until cancelled."""
        self.queue = self.audio_queue_provider()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._sensors(), name="fire:sensors")
            if self.queue is not None:
                group.create_task(self._audio(self.queue), name="fire:audio")

    async def _sensors(self) -> None:
        while True:
            self.evaluate()
            await asyncio.sleep(self.cfg.period_s)

    async def _audio(self, queue: AudioQueue) -> None:
        while True:
            t_s, block = await queue.get()
            self.last_block_s = self.clock.monotonic()
            if self.engine.feed_audio(t_s, block):
                self.evaluate()

    def _value(self, names: list[str]) -> float | None:
        if not names:
            return None
        choice = self.hub.best(names, self.cfg.stale_after_s)
        return None if choice.reading is None else float(choice.reading.value)

    def inputs(self, t_s: float) -> FireInputs:
        """The engine's inputs now, from the hub, the power provider and the audio stream."""
        occupancy = self._value(self.cfg.occupancy_channels)
        try:
            power = self.power_w_provider()
        except Exception:  # a broken provider costs the power model, never detection
            log.exception("power provider failed")
            power = None
        now = self.clock.now()
        audio_ok = None if self.queue is None else (
            self.last_block_s is not None and t_s - self.last_block_s <= self.cfg.audio_stale_s)
        return FireInputs(temp_c=self._value(self.cfg.room_channels or ["room_temp"]),
                          co2_ppm=self._value(self.cfg.co2_channels),
                          pm_ug_m3=self._value(self.cfg.pm_channels), power_w=power,
                          sound_db_a=self._value(self.cfg.sound_level_channels),
                          occupancy=None if occupancy is None else occupancy >= 0.5,
                          hour=now.hour + now.minute / 60.0, audio_ok=audio_ok)

    def evaluate(self) -> Decision:
        """One fusion step now; calls ``on_alarm`` on entering ALARM."""
        t_s = self.clock.monotonic()
        if self.queue is not None and self.last_block_s is None:
            self.last_block_s = t_s  # the stream gets audio_stale_s to start
        previous = self.decision.state if self.decision else FireState.NORMAL
        decision = self.engine.step(t_s, self.inputs(t_s))
        self.decision = decision
        if decision.state is not previous:
            level = log.error if decision.state in (FireState.ALARM, FireState.FAULT) else log.warning
            level("fire state", state=decision.state.value, reason=decision.reason,
                  score=round(decision.score, 3))
        if decision.state is FireState.ALARM and previous is not FireState.ALARM:
            self._raise_alarm(decision)
        return decision

    def _raise_alarm(self, decision: Decision) -> None:
        self.alarm_calls += 1
        try:
            self.on_alarm(decision)
        except Exception:  # the response path's own failure must not stop detection; it is logged loudly
            log.exception("on_alarm failed", reason=decision.reason)

    def reset(self, authorised: bool, who: str = "") -> bool:
        """End a latched ALARM (authorised command or technician only); logged either way."""
        done = self.engine.fusion.reset(authorised, who)
        (log.warning if done else log.error)("fire alarm reset" if done else "fire reset refused", who=who)
        if done:
            self.decision = None
        return done

    def status(self) -> dict[str, Any]:
        """Plain JSON: state, score, explanation, evidence, inputs, sound and heat-model internals."""
        d = self.decision
        sound = self.engine.sound
        return {
            "state": d.state.value if d else "starting",
            "decision": d.as_dict() if d else None,
            "alarm": self.engine.fusion.alarm.as_dict() if self.engine.fusion.alarm else None,
            "alarm_calls": self.alarm_calls,
            "audio": {"subscribed": self.queue is not None, "processed_s": round(sound.samples / 16000.0, 1),
                      "confirmations": sound.confirmations,
                      "last_block_s": self.last_block_s},
            "heat": self.engine.heat.status(),
        }
