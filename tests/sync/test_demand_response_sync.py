"""Demand response through a real broker: the platform stand-in asks, the whole agent answers with what it
expects (nothing promised before its room model is ready), refuses an invalid window, keeps the request, and
reports the outcome as a ``demand_response`` event once the window and its recovery are over."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.sdnotify import Notifier


async def test_demand_response_answered_kept_and_reported(tmp_path: Path, heater_agent_data, platform) -> None:
    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.5)
    data["sensors"][0]["period_s"] = 0.5
    data["thermostat"]["demand_response"] = {"preheat_s": 0.0, "recovery_s": 1.0}
    agent = Agent(parse_config(data), Clock(), Notifier({}))
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=19.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await platform.wait(lambda p: p.devices["heater-1"].state is not None, 15)
        now = time.time()
        dry = platform.demand_response("heater-1", now + 2.0, now + 6.0, 0.0, dry_run=True)
        answer = await asyncio.to_thread(platform.response, dry, 15)
        assert answer is not None and answer["ok"] is True, answer
        assert answer["result"] == {"accepted": False, "expected_discomfort_kh": None, "expected_lowest_c": None}
        assert agent.thermostat.dr is not None and agent.thermostat.dr.active == []

        bad = platform.demand_response("heater-1", now + 6.0, now + 2.0, 0.0)
        refused = await asyncio.to_thread(platform.response, bad, 15)
        assert refused is not None and refused["ok"] is False and refused["reason"] == "rejected", refused

        now = time.time()  # a window long enough to be seen on a loaded machine
        kept = platform.demand_response("heater-1", now + 1.0, now + 15.0, 0.0)
        accepted = await asyncio.to_thread(platform.response, kept, 15)
        assert accepted is not None and accepted["ok"] is True and accepted["result"]["accepted"] is True
        assert await platform.wait(lambda p: "demand response" in agent.thermostat.limit_reason, 15)
        assert agent.power.demand_w == 0.0  # the limit holds (a cold room would otherwise heat at full power)

        def event(p):
            return [m for m in p.devices["heater-1"].messages.values()
                    if m["kind"] == "event" and m["body"]["name"] == "demand_response"]

        assert await platform.wait(lambda p: event(p), 60)
        detail = event(platform)[0]["body"]["detail"]
        assert isinstance(detail["request_id"], str) and detail["request_id"]
        assert detail["kind"] == "shed" and detail["energy_in_window_wh"] >= 0.0
        assert detail["expected_discomfort_kh"] is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
