"""Demand response on the daemon's thermostat against hw-sim's heater and room in virtual time: the room
model learns on the home schedule (about a day), then a shed request is answered with the discomfort the
model expects and kept, one that would take the room below frost protection is refused, and the kept one's
outcome is recorded."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.control.demand_response import DemandResponse, DrRequest, DrSettings, Expectation
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import sim_config

MONDAY = datetime(2026, 1, 5)


def test_request_window_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        DrRequest("x", MONDAY, MONDAY, "shed", 50.0)
    with pytest.raises(ValueError):
        DrRequest("x", MONDAY, MONDAY + timedelta(hours=1), "shed", -1.0)


def test_shape_preheats_holds_the_limit_and_keeps_frost_protection() -> None:
    dr = DemandResponse(DrSettings(preheat_s=3600.0, band_k=1.0, frost_c=7.0, after_s=600.0))
    start = MONDAY.replace(hour=18)
    dr.accept(DrRequest("a", start, start + timedelta(hours=2), "shed", 50.0), Expectation(None, None))
    assert dr.shape(start - timedelta(hours=2), 20.0, 20.0) == (20.0, None, None, "")
    target_c, cap, floor, why = dr.shape(start - timedelta(minutes=30), 20.0, 20.0)
    assert target_c == 21.0 and cap is None and floor is None and "pre-heating" in why
    assert dr.shape(start + timedelta(minutes=30), 20.0, 19.0)[1] == 50.0
    assert dr.shape(start + timedelta(minutes=30), 20.0, 6.9)[1] is None  # at frost protection: no limit
    for minutes in range(0, 131, 1):  # the window and its recovery, then the outcome
        done = dr.observe(start + timedelta(minutes=minutes), 20.0, 19.0 if minutes < 120 else 19.8, 50.0)
    assert len(done) == 1 and dr.completed == 1 and not dr.active
    outcome = done[0]
    assert outcome.energy_in_window_wh == pytest.approx(100.0, rel=0.02)
    assert outcome.discomfort_during_kh == pytest.approx(1.0, rel=0.02)  # 0.5 K below the band for 2 h
    assert outcome.discomfort_after_kh == 0.0 and outcome.lowest_c == 19.0


def test_shed_accepted_with_its_expected_discomfort_refused_below_frost_and_reported(tmp_path: Path) -> None:
    heater = SimulatedHeater(tmp_path, HeaterSpec(initial_air_c=20.0), Weather.constant(-5.0), MONDAY, seed=2)
    cfg = sim_config(tmp_path, {"mode": "auto", "setpoints": {"comfort_c": 20.0, "eco_c": 19.0, "frost_c": 7.0},
                                "demand_response": {"preheat_s": 3600.0, "band_k": 1.0, "recovery_s": 1800.0}})
    agent = Agent(cfg, Clock(calendar_start=MONDAY, loop_start_s=0.0), Notifier({}))
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=30.0))
        task = asyncio.create_task(agent.run(stop))
        thermostat = agent.thermostat
        assert thermostat.predictor is not None
        for _ in range(48):  # the model learns on the schedule's raises and setbacks (about a day)
            await asyncio.sleep(3600)
            if thermostat.predictor.ready()[0]:
                break
        seen["ready"] = thermostat.predictor.ready()
        start = thermostat.clock.now() + timedelta(hours=4)  # the 2 h before the pre-heat are observed
        setpoints = thermostat.schedule.setpoints
        thermostat.schedule.setpoints = replace(setpoints, frost_c=18.5)  # as the platform's set_setpoint would
        with pytest.raises(ValueError, match="below frost protection"):  # a day at nothing: below 18.5 °C
            thermostat.request_demand_response(DrRequest("cold", start, start + timedelta(hours=24), "shed", 0.0))
        thermostat.schedule.setpoints = setpoints
        seen["dry"] = thermostat.request_demand_response(
            DrRequest("dry", start, start + timedelta(hours=2), "shed", 50.0), dry_run=True)
        seen["after_dry"] = list(thermostat.dr.active)  # type: ignore[union-attr]
        seen["kept"] = thermostat.request_demand_response(
            DrRequest("dr-1", start, start + timedelta(hours=2), "shed", 50.0))
        await asyncio.sleep(3.5 * 3600)  # in the pre-heat
        seen["preheat"] = (thermostat.target_c, thermostat.setpoint_c)
        await asyncio.sleep(3600)  # in the window
        seen["window"] = (agent.power.demand_w, thermostat.limit_reason)
        await asyncio.sleep(2.5 * 3600)  # past the window and its recovery (30 min)
        seen["status"] = thermostat.status()["demand_response"]
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    assert seen["ready"] == (True, "ready")
    dry = seen["dry"]
    assert isinstance(dry, Expectation) and dry.discomfort_kh is not None and dry.lowest_c is not None
    assert seen["after_dry"] == []
    assert isinstance(seen["kept"], Expectation) and not seen["kept"].below_frost
    target_c, setpoint_c = seen["preheat"]  # type: ignore[misc]
    assert target_c == setpoint_c + 1.0
    demand_w, reason = seen["window"]  # type: ignore[misc]
    assert demand_w <= 50.0 and "demand response dr-1" in reason
    status = seen["status"]
    assert status["requests"] == [] and len(status["outcomes"]) == 1  # type: ignore[index]
    outcome = status["outcomes"][0]  # type: ignore[index]
    assert outcome["request_id"] == "dr-1" and outcome["energy_in_window_wh"] <= 2 * 60.0  # mains: 50 W demand ~54 W
    assert outcome["lowest_c"] >= 7.0 and outcome["energy_before_wh"] is not None
