"""The fire response end to end: from the ALARM decision, compute power at its floor within 1 s with the
thermostat hung and the broker down; the alarm reaches the platform exactly once when the broker is back."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from qrad_agent.fire.evidence import Evidence
from qrad_agent.fire.fusion import Decision, FireState
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

from test_agent_sync import _agent


async def test_alarm_cuts_power_with_thermostat_hung_and_broker_down(tmp_path: Path, heater_agent_data, platform,
                                                                     broker) -> None:
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(0.0),
                             datetime(2026, 1, 5), seed=4)
    agent = _agent(heater_agent_data)
    assert agent.fire is not None

    async def hung_thermostat() -> None:  # demands full power once, then never returns to the loop
        while "room_temp" not in agent.hub.latest:
            await asyncio.sleep(0.1)
        agent.thermostat.step()
        await asyncio.Event().wait()

    agent.thermostat.run = hung_thermostat  # type: ignore[method-assign]
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=0.2, speed=1.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await platform.wait(lambda p: p.devices["heater-1"].state is not None, 15)
        ramp_until = time.monotonic() + 10
        while heater.state.power_w <= 400 and time.monotonic() < ramp_until:  # the board follows the demand
            await asyncio.sleep(0.05)
        assert heater.state.power_w > 400  # heating a cold room at full power
        broker.stop()
        decision = Decision(FireState.ALARM, agent.clock.monotonic(), 0.97, 0.0,
                            "alarm sound T3 + rate of rise 12 K/min",
                            (Evidence("sound", 0.9, {"pattern": "T3"}, "T3 confirmed"),))
        started = time.monotonic()
        agent.fire._raise_alarm(decision)
        while heater.state.power_w > 60 and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        assert heater.state.power_w <= 60, heater.state.power_w  # the board's idle floor: jobs stopped
        assert elapsed < 1.0, elapsed
        assert "fire_alarm" in agent.safety.conditions
        await asyncio.sleep(2.0)  # the outbox holds the alarm while the broker is down
        broker.start()
        assert await platform.wait(lambda p: any(m["kind"] == "alarm" for m in p.devices["heater-1"].messages.values()),
                                   20)
        await asyncio.sleep(1.0)
        alarms = [m for m in platform.devices["heater-1"].messages.values() if m["kind"] == "alarm"]
        assert len(alarms) == 1 and alarms[0]["body"]["state"] == "raised"  # exactly once, by sequence number
        assert heater.state.power_w <= 60  # latched: still at the floor
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
