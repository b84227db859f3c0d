"""The FireDetector component on a virtual-time loop: a real SensorHub, an audio queue, on_alarm once."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import numpy as np

from qrad_agent.clock import Clock
from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.detector import FireDetector
from qrad_agent.fire.fusion import FireState
from qrad_agent.sensing.hub import SensorHub
from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverContext, Reading
from qrad_hwsim.fire import sounds
from qrad_hwsim.virtual_time import run_virtual


class _RoomProbe(Driver):
    """A driver whose readings the test stores into the hub directly (the transport seam)."""

    type_name = "probe"
    config_model = DriverConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        return (self.spec("temp", "temperature", "°C", -40, 125), self.spec("co2", "carbon_dioxide", "ppm", 0, 40000))

    async def read(self, t_s: float) -> list[Reading]:
        return []


def _hub(clock: Clock) -> SensorHub:
    return SensorHub([_RoomProbe(DriverConfig(type="probe", name="room"), DriverContext())], clock)


def _cfg() -> FireConfig:
    return FireConfig(room_channels=["room_temp"], co2_channels=["room_co2"], period_s=1.0)


async def _scenario(with_alarm: bool) -> tuple[FireDetector, list]:
    clock = Clock(calendar_start=datetime(2024, 1, 10, 21, 0))
    hub = _hub(clock)
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)
    alarms: list = []
    det = FireDetector(_cfg(), hub, lambda: queue, lambda: 300.0, clock, alarms.append)
    task = asyncio.create_task(det.run(), name="fire")
    loop = asyncio.get_running_loop()
    house = sounds.Household(np.random.default_rng(0), length_s=30.0)
    track = sounds.BeepTrack(sounds.t3_beeps(5.0, 30.0, 3100.0, 0.1) if with_alarm else [])
    for k in range(240):  # 30 s of 0.125 s blocks, delivered on the loop clock
        t = loop.time()
        hub.store([Reading("room_temp", 21.0, "°C", t), Reading("room_co2", 600.0, "ppm", t)])
        pcm = sounds.to_int16(house.render(k * 2000, 2000) * 0.01 + track.render(k * 2000, 2000))
        await queue.put((t, pcm))
        await asyncio.sleep(0.125)
    status = det.status()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    json.dumps(status)  # plain JSON
    return det, alarms


def test_alarm_sound_reaches_alarm_and_calls_on_alarm_once() -> None:
    det, alarms = run_virtual(_scenario(with_alarm=True))
    assert len(alarms) == 1 and alarms[0].state is FireState.ALARM
    assert "temporal-three" in alarms[0].reason
    assert det.decision is not None and det.decision.state is FireState.ALARM  # latched
    assert det.reset(authorised=False) is False and det.reset(authorised=True, who="technician")


def test_quiet_room_stays_normal() -> None:
    det, alarms = run_virtual(_scenario(with_alarm=False))
    assert alarms == [] and det.decision is not None and det.decision.state is FireState.NORMAL


async def _missing_inputs() -> tuple[FireDetector, list]:
    clock = Clock(calendar_start=datetime(2024, 1, 10, 12, 0))
    hub = _hub(clock)
    queue: asyncio.Queue = asyncio.Queue()
    alarms: list = []
    det = FireDetector(_cfg(), hub, lambda: queue, lambda: None, clock, alarms.append)
    task = asyncio.create_task(det.run())
    await asyncio.sleep(20.0)  # no readings, no audio: still the start-up grace (stale_after_s)
    early = det.decision.state if det.decision else None
    await asyncio.sleep(det.cfg.stale_after_s)
    state = det.decision.state if det.decision else None
    reason = det.decision.reason if det.decision else ""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return early, state, reason


def test_missing_temperature_and_audio_is_fault_after_the_start_up_grace() -> None:
    early, state, reason = run_virtual(_missing_inputs())
    assert early is not FireState.FAULT
    assert state is FireState.FAULT
    assert "heat" in reason and "sound" in reason
