"""The whole agent with platform sync against a real broker: state and telemetry arrive, a platform
command changes the heater, a malformed one is answered with an error."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.sdnotify import Notifier
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather


def _agent(heater_agent_data) -> Agent:
    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.5)
    data["sensors"][0]["period_s"] = 0.5
    return Agent(parse_config(data), Clock(), Notifier({}))


async def test_agent_reports_and_obeys_the_platform(tmp_path: Path, heater_agent_data, platform) -> None:
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=19.5), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    agent = _agent(heater_agent_data)
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await platform.wait(lambda p: p.devices["heater-1"].state is not None, 15)
        state = platform.devices["heater-1"].state  # the retained StateMessage, not an outbox envelope
        assert state["mode"] == "comfort" and state["setpoint_c"] == 20.0 and state["heat_demand_w"] >= 0
        assert await platform.wait(lambda p: any(m["kind"] == "telemetry"
                                                 for m in p.devices["heater-1"].messages.values()), 15)
        telemetry = next(m for m in platform.devices["heater-1"].messages.values() if m["kind"] == "telemetry")
        assert any(r["channel"] == "room_temp" and r["quality"] == "good" for r in telemetry["body"]["readings"])

        correlation = platform.set_setpoint("heater-1", "comfort", 22.5)
        response = await asyncio.to_thread(platform.response, correlation, 15)
        assert response is not None and response.get("ok") is True, response
        assert agent.thermostat.schedule.setpoints.comfort_c == 22.5

        bad = platform.set_setpoint("heater-1", "comfort", 99.0)  # outside the model's bounds
        refused = await asyncio.to_thread(platform.response, bad, 15)
        assert refused is not None and refused.get("ok") is False
        assert agent.thermostat.schedule.setpoints.comfort_c == 22.5
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
