"""A room sensor whose reading steps and stays, through the real sensor hub (virtual time): it stays FAULT
until a redundant sensor or a physically possible path confirms the level (issue 12, item 5)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Literal

import pytest
from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverContext, Quality, Reading
from qrad_hwsim.virtual_time import run_virtual
from structlog.testing import capture_logs

from qrad_agent.clock import Clock
from qrad_agent.config import FireConfig, PowerConfig, SafetyConfig, SensorHubConfig, ThermostatConfig
from qrad_agent.control.pid import PidController, PidGains
from qrad_agent.control.thermostat import Thermostat
from qrad_agent.fire.detector import FireDetector
from qrad_agent.fire.fusion import FireState
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sensing.hub import SensorHub
from qrad_agent.sensing.plausibility import RateGuard, guard_rate

STEP_AT_S = 60.0


class ProgramConfig(DriverConfig):
    type: Literal["program"] = "program"


class ProgrammedSensor(Driver):
    """A room temperature sensor at the driver seam whose value is a function of time (°C)."""

    type_name = "program"
    config_model = ProgramConfig

    def __init__(self, name: str, value_at: Callable[[float], float], period_s: float) -> None:
        self.value_at = value_at
        super().__init__(ProgramConfig(name=name, timeout_s=1.0, period_s=period_s), DriverContext())

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        return (ChannelSpec(self.cfg.name, "temperature", "°C", -40, 125, self.period_s),)

    async def open(self) -> None:
        pass

    async def read(self, t_s: float) -> list[Reading]:
        return [Reading(self.cfg.name, round(self.value_at(t_s), 2), "°C", t_s)]


def stepped(level_c: float, back_at_s: float = math.inf) -> Callable[[float], float]:
    """19.9 °C with a little noise, then ``level_c`` from STEP_AT_S (until ``back_at_s``)."""
    return lambda t: (level_c if STEP_AT_S <= t < back_at_s else 19.9) + 0.03 * math.sin(7.3 * t)


def steady(value_c: float) -> Callable[[float], float]:
    return lambda t: value_c + 0.03 * math.cos(5.1 * t)


def _history(hub: SensorHub, name: str, after_s: float) -> list[Reading]:
    return [r for r in hub.channels[name].history if r.t_s >= after_s]


@pytest.mark.parametrize("level_c", [-1.0, 57.0])
def test_a_stepped_single_sensor_stays_fault_and_feeds_neither_pid_nor_fire(level_c: float) -> None:
    """The issue's input: one sensor polled every 0.2 s steps 19.9 -> -1.0 or 57 °C and stays. Before,
    one sample was a spike and the next ones OK: the PID went to 500 W, 57 °C raised a fire ALARM."""
    sensor = ProgrammedSensor("room_temp", stepped(level_c), period_s=0.2)
    hub = SensorHub([sensor], Clock(), SensorHubConfig(history_len=100_000), ["room_temp"])
    fire = FireDetector(FireConfig(room_channels=["room_temp"]), hub, lambda: None, lambda: 150.0, Clock(),
                        lambda decision: None)
    pid = PidController(PidGains(1400.0, 1100.0), 0.0, 500.0)
    seen: dict[str, object] = {"pid_w": [], "fire": set()}

    async def scenario() -> None:
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(fire.run())]
        pid.reset(output_w=149.0)
        for _ in range(int(11 * 60 / 30)):  # 11 minutes, a control period of 30 s
            await asyncio.sleep(30)
            choice = hub.best(["room_temp"], stale_after_s=300)
            if choice.reading is not None:
                seen["pid_w"].append(pid.update(20.0, choice.reading.value, 30.0))  # type: ignore[union-attr]
            seen["fire"].add(fire.decision.state if fire.decision else None)  # type: ignore[union-attr]
        seen["choice"] = hub.best(["room_temp"], stale_after_s=300)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_virtual(scenario())
    after = _history(hub, "room_temp", STEP_AT_S)
    assert len(after) >= 2990  # 10 minutes at 5 Hz
    assert all(r.quality is Quality.FAULT for r in after), [r for r in after if r.ok][:3]
    assert "spike" in after[0].reason and "held" in after[-1].reason
    assert seen["choice"].reading is None  # type: ignore[attr-defined]
    assert max(seen["pid_w"]) < 200.0  # type: ignore[arg-type]  # only pre-step samples (≈ 20 °C) reached it
    assert FireState.ALARM not in seen["fire"]  # type: ignore[operator]


def test_a_level_that_walks_back_is_accepted_again() -> None:
    sensor = ProgrammedSensor("room_temp", stepped(57.0, back_at_s=STEP_AT_S + 5.0), period_s=0.2)
    hub = SensorHub([sensor], Clock(), SensorHubConfig(history_len=100_000), ["room_temp"])

    async def scenario() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(STEP_AT_S + 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(scenario())
    during = [r for r in _history(hub, "room_temp", STEP_AT_S) if r.t_s < STEP_AT_S + 5.0]
    back = _history(hub, "room_temp", STEP_AT_S + 5.0)
    assert during and all(not r.ok for r in during)
    assert back and all(r.ok for r in back)


def test_a_step_confirmed_by_a_redundant_sensor_is_accepted() -> None:
    """Two independent room sensors (0.2 s and 1 s) see the same quick change: each confirms the other."""
    sht = ProgrammedSensor("sht", stepped(23.5), period_s=0.2)
    ds = ProgrammedSensor("ds", lambda t: stepped(23.5)(t - 0.5), period_s=1.0)
    hub = SensorHub([sht, ds], Clock(), SensorHubConfig(history_len=100_000), ["sht", "ds"])

    async def scenario() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(STEP_AT_S + 60)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(scenario())
    for name in ("sht", "ds"):
        after = _history(hub, name, STEP_AT_S + 2.0)
        assert after and all(r.ok and abs(r.value - 23.5) < 0.1 for r in after), name
    assert sum(not r.ok for r in _history(hub, "sht", STEP_AT_S)) <= 6  # until the peer shows it (1 s)


def test_a_stepped_sensor_beside_steady_peers_stays_fault_and_the_thermostat_says_why_it_switched() -> None:
    sht = ProgrammedSensor("sht", stepped(57.0), period_s=0.2)
    ds = ProgrammedSensor("ds", steady(19.9), period_s=1.0)
    clock = Clock()
    hub = SensorHub([sht, ds], clock, SensorHubConfig(history_len=100_000), ["sht", "ds"])
    power = PowerManager(PowerConfig(interfaces=[]), actuators=[])
    safety = SafetyLayer(SafetyConfig(surface_channel=None), power, clock, heartbeat_timeout_s=120.0)
    thermostat = Thermostat(ThermostatConfig(mode="comfort", room_channels=["sht", "ds"]), power, hub, safety,
                            clock)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        task = asyncio.create_task(hub.run())
        for _ in range(12):  # six minutes of control periods
            await asyncio.sleep(30)
            thermostat.step()
            if "first" not in seen:
                seen["first"] = thermostat.status()["room_channel"]
        seen["status"] = thermostat.status()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with capture_logs() as logs:
        run_virtual(scenario())
    assert seen["first"] == "sht"
    assert all(not r.ok for r in _history(hub, "sht", STEP_AT_S))
    status = seen["status"]
    assert isinstance(status, dict)
    assert status["room_channel"] == "ds" and abs(status["room_c"] - 19.9) < 0.1
    switches = [e for e in logs if e["event"] == "room channel switched"]
    assert len(switches) == 1, switches
    assert switches[0]["previous"] == "sht" and switches[0]["channel"] == "ds"
    assert switches[0]["reason"].startswith("sht: fault: held: 57.")


def test_the_reference_is_the_last_accepted_sample_not_the_last_sample() -> None:
    """Unit view of the same rule: after a flagged sample, the next is compared with the last OK one."""
    guard = RateGuard()
    out = [guard_rate(guard, Reading("t", v, "°C", 0.2 * k), 1.0, 1.0)
           for k, v in enumerate([19.9, 19.9, 57.0, 57.0, 57.0, 57.1, 19.95])]
    assert [r.ok for r in out] == [True, True, False, False, False, False, True]
    assert guard.reference is not None and guard.reference.value == 19.95
