"""The agent in-process against hw-sim in virtual time: stale or missing room sensor, a dying component,
a hung control loop. Each must end at minimum power with a logged reason, never a crash or full power."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.errors import ComponentDied
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import sim_config
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5)


def _heater(root: Path) -> SimulatedHeater:
    return SimulatedHeater(root, HeaterSpec(initial_air_c=18.0), Weather.constant(0.0), START, seed=1)


def _agent(root: Path, controller=None) -> Agent:
    cfg = sim_config(root, {"mode": "comfort"})
    return Agent(cfg, Clock(calendar_start=START, loop_start_s=0.0), Notifier({}), controller)


@pytest.mark.parametrize("fault, quality", [("stuck", "stale"), ("missing", "fault")])
def test_room_sensor_fault_puts_power_at_minimum_then_recovers(tmp_path: Path, fault: str, quality: str) -> None:
    heater = _heater(tmp_path)
    agent = _agent(tmp_path)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(3600)  # heating a cold room: well above minimum power
        seen["heating_w"] = heater.state.power_w
        heater.sensor.set_fault(fault)
        await asyncio.sleep(900 if fault == "stuck" else 120)
        seen["fault_w"] = heater.state.power_w
        seen["reason"] = agent.thermostat.limit_reason
        seen["level"] = agent.power.level
        seen["quality"] = agent.hub.latest["room_temp"].quality.value
        heater.sensor.set_fault("ok")
        await asyncio.sleep(600)
        seen["recovered_w"] = heater.state.power_w
        stop.set()
        await task
        sim.cancel()

    with capture_logs() as logs:
        run_virtual(scenario())
    assert seen["heating_w"] > 300
    assert seen["quality"] == quality
    assert str(seen["reason"]).startswith("no valid room temperature")
    assert seen["level"] == 0.0
    assert seen["fault_w"] < 60  # the board's idle draw: jobs throttled to the minimum quota, lowest P-state
    assert seen["recovered_w"] > 300
    at_minimum = [e for e in logs if e["event"] == "thermostat at minimum power" and "room_temp" in e["reason"]]
    # Once at start (no reading yet: normal, info), once for the fault (warning): not every period.
    assert [e["log_level"] for e in at_minimum] == ["info", "warning"]
    assert "no reading yet" in at_minimum[0]["reason"]


def test_start_up_is_info_but_a_sensor_that_never_reads_is_a_warning(tmp_path: Path) -> None:
    _heater(tmp_path)  # the board's sysfs tree; the hub is never started, so no room reading ever arrives
    agent = _agent(tmp_path)
    stale_after_s = agent.cfg.thermostat.stale_after_s

    async def scenario() -> list[tuple[float, list[str]]]:
        seen = []
        for wait_s in (0.0, stale_after_s / 2, stale_after_s / 2 + 1.0, 60.0):
            await asyncio.sleep(wait_s)
            with capture_logs() as logs:
                agent.thermostat.step()
            seen.append((agent.power.level, [e["log_level"] for e in logs
                                              if e["event"] == "thermostat at minimum power"]))
        return seen

    seen = run_virtual(scenario())
    assert [levels for _, levels in seen] == [["info"], [], ["warning"], []]
    assert all(level == 0.0 for level, _ in seen)
    assert agent.thermostat.limit_reason.startswith("no valid room temperature")


class _Crashing:
    def __init__(self) -> None:
        self.calls = 0

    def step(self, setpoint_c, pv_c, dt_s, applied_w):
        self.calls += 1
        if self.calls > 10:
            raise RuntimeError("controller bug")
        return 500.0


def test_component_that_dies_stops_the_agent_at_minimum_power(tmp_path: Path) -> None:
    heater = _heater(tmp_path)
    agent = _agent(tmp_path, controller=_Crashing())

    async def scenario() -> None:
        sim = asyncio.create_task(heater.run(step_s=10.0))
        try:
            await agent.run(asyncio.Event())
        finally:
            sim.cancel()

    with pytest.raises(ComponentDied) as info:
        run_virtual(scenario())
    assert info.value.component == "control"
    assert "controller bug" in str(info.value)
    policies = sorted((tmp_path / "devices/system/cpu/cpufreq").glob("policy*"))
    assert all((p / "scaling_max_freq").read_text().strip() == (p / "cpuinfo_min_freq").read_text().strip()
               for p in policies)
    assert (tmp_path / "state" / "state.json").exists()


class _Hanging:
    def __init__(self) -> None:
        self.calls = 0

    def step(self, setpoint_c, pv_c, dt_s, applied_w):
        self.calls += 1
        return 500.0


def test_hung_control_loop_is_caught_by_the_safety_heartbeat(tmp_path: Path) -> None:
    heater = _heater(tmp_path)
    agent = _agent(tmp_path, controller=_Hanging())
    seen: dict[str, object] = {}

    async def hang_forever() -> None:
        while "room_temp" not in agent.hub.latest:
            await asyncio.sleep(1)
        agent.thermostat.step()
        await asyncio.Event().wait()  # an await that never returns: the loop is alive, control is not

    agent.thermostat.run = hang_forever  # type: ignore[method-assign]

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(60)
        seen["before_w"] = heater.state.power_w
        await asyncio.sleep(agent.cfg.power.heartbeat_timeout_s + 60)
        seen["after_w"] = heater.state.power_w
        seen["conditions"] = dict(agent.safety.conditions)
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    assert seen["before_w"] > 400
    assert "control_heartbeat" in seen["conditions"]
    assert seen["after_w"] < 60


def test_summer_mode_keeps_a_compute_floor_below_the_comfort_maximum(tmp_path: Path) -> None:
    heater = SimulatedHeater(tmp_path, HeaterSpec(initial_air_c=21.0), Weather.constant(21.0), START, seed=2)
    cfg = sim_config(tmp_path, {"mode": "frost", "summer": {"enabled": True, "floor_w": 150.0,
                                                            "comfort_max_c": 24.0}})
    agent = Agent(cfg, Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))
    air: list[float] = []
    power: list[float] = []

    def record(state) -> None:
        air.append(state.air_c)
        power.append(state.power_w)

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=30.0, on_step=record))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(3 * 86400)
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    first_day = power[: len(power) // 3]
    assert sum(first_day) / len(first_day) > 120  # the floor runs while the room is below 24 °C
    assert max(air) < 24.5  # and stops at the comfort maximum, though the frost setpoint asks for nothing
    assert min(power) < 60  # it did switch off
