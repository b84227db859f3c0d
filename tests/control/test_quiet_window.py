"""Quiet hours (a fan-noise cap at night) and open-window detection: the pure logic, then the daemon's
thermostat against hw-sim's heater and room in virtual time (the window is opened in the simulated room as a
negative internal gain: cold air coming in)."""

from __future__ import annotations

import asyncio
from datetime import datetime, time
from pathlib import Path

from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

from qrad_agent.agent import Agent
from qrad_agent.api.views import status_table
from qrad_agent.clock import Clock
from qrad_agent.control.quiet import QuietHours
from qrad_agent.control.window import WindowDetector, WindowSettings
from qrad_agent.ops.explain import explain_power, explain_table
from qrad_agent.ops.status import build_status
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import sim_config

MONDAY = datetime(2026, 1, 5)


def test_quiet_hours_window_crosses_midnight_and_may_need_presence() -> None:
    quiet = QuietHours(time(22, 0), time(7, 0), 200.0)
    assert quiet.cap(MONDAY.replace(hour=23), None)[0] == 200.0
    assert quiet.cap(MONDAY.replace(hour=3), None)[0] == 200.0
    cap, why = quiet.cap(MONDAY.replace(hour=7), None)
    assert cap is None and "outside" in why
    bedroom = QuietHours(time(22, 0), time(7, 0), 200.0, needs_presence=True)
    assert bedroom.cap(MONDAY.replace(hour=1), present=False)[0] is None
    cap, why = bedroom.cap(MONDAY.replace(hour=1), present=True)
    assert cap == 200.0 and "present" in why and "200 W" in why


def test_window_contact_pauses_until_closed() -> None:
    detector = WindowDetector(WindowSettings())
    assert not detector.update(0.0, 20.0, contact_open=False)
    assert detector.update(30.0, 19.0, contact_open=True) and detector.reason == "window contact open"
    assert detector.update(60.0, 17.0, contact_open=True)
    # closed: heating resumes at once, and the fall while it was open is not taken for a new drop
    assert not detector.update(90.0, 17.0, contact_open=False)
    assert not detector.update(120.0, 17.0, contact_open=False)
    assert detector.events == 1


def test_window_drop_detected_then_recovers_and_slow_falls_ignored() -> None:
    detector = WindowDetector(WindowSettings(drop_k=0.6, drop_window_s=300.0, recover_k=0.3, max_pause_s=1800.0))
    t = 0.0
    for _ in range(40):  # coasting at minimum power: 0.30 K in 5 min, the largest fall in the sim's week
        assert not detector.update(t, 20.0 - 0.001 * t, None)
        t += 30.0
    room = 20.0 - 0.001 * t
    opened = None
    for _ in range(10):  # a window: 0.3 K per minute
        room -= 0.15
        if detector.update(t, room, None) and opened is None:
            opened = t
        t += 30.0
    assert opened is not None and "room fell" in detector.reason
    for _ in range(5):
        assert detector.update(t, room, None)  # still paused while the room stays low
        t += 30.0
    assert not detector.update(t, room + 0.35, None)  # rising again: closed
    # a pause that never sees the room rise ends after max_pause_s
    detector.update(t, 25.0, None)
    for k in range(12):
        detector.update(t, 25.0 - 0.1 * k, None)
        t += 30.0
    assert detector.open
    assert not detector.update(t + 1800.0, 23.0, None)


def _rig(root: Path, thermostat: dict) -> tuple[SimulatedHeater, Agent]:
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=17.0), Weather.constant(0.0), MONDAY, seed=1)
    cfg = sim_config(root, thermostat)
    return heater, Agent(cfg, Clock(calendar_start=MONDAY, loop_start_s=0.0), Notifier({}))


def test_quiet_hours_cap_power_and_show_in_explain(tmp_path: Path) -> None:
    """A cold room at 01:00 wants full power; quiet hours hold it at 200 W and say so; at 07:00 full power."""
    heater, agent = _rig(tmp_path, {"mode": "comfort", "quiet": {"enabled": True, "start": "22:00", "end": "07:00",
                                                                 "max_w": 200.0}})
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(3600)
        seen["night"] = (agent.thermostat.demand_w, agent.thermostat.limit_reason, agent.power.demand_w)
        seen["explain"] = explain_table(explain_power(agent.thermostat, agent.power, agent.safety))
        seen["status"] = agent.thermostat.status()["quiet"]
        seen["table"] = status_table(build_status(agent.status(), agent.parts))
        await asyncio.sleep(6.5 * 3600)  # 07:30
        seen["morning"] = agent.thermostat.demand_w
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    demand_w, reason, applied_w = seen["night"]  # type: ignore[misc]
    assert demand_w == 200.0 and applied_w == 200.0
    assert "quiet hours 22:00-07:00" in reason and "200 W" in reason
    assert "quiet hours 22:00-07:00" in str(seen["explain"])
    assert seen["status"]["max_w"] == 200.0  # type: ignore[index]
    assert "quiet       quiet hours 22:00-07:00: fan noise cap 200 W" in str(seen["table"])
    assert seen["morning"] == 500.0  # the room is still cold: full power once the window ends


def test_open_window_pauses_heating_and_resumes(tmp_path: Path) -> None:
    """Cold air through an open window (-3 kW into the air node for 10 min): heating pauses at minimum power
    within minutes, shows in status and explain, and resumes once the window is closed and the room rises."""
    heater, agent = _rig(tmp_path, {"mode": "comfort"})
    heater.room.air_c = 20.0
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(3 * 3600)  # regulated at 20 °C
        seen["before"] = agent.thermostat.status()["window"]
        heater.internal_w = -3000.0
        opened_at = asyncio.get_running_loop().time()
        while not agent.thermostat.status()["window"]["open"]:
            await asyncio.sleep(10.0)
        seen["detected_after_s"] = asyncio.get_running_loop().time() - opened_at
        await asyncio.sleep(60.0)
        seen["paused"] = (agent.thermostat.demand_w, agent.thermostat.limit_reason)
        seen["explain"] = explain_table(explain_power(agent.thermostat, agent.power, agent.safety))
        seen["status"] = status_table(build_status(agent.status(), agent.parts))
        await asyncio.sleep(max(0.0, 600.0 - (asyncio.get_running_loop().time() - opened_at)))
        heater.internal_w = 0.0
        while agent.thermostat.status()["window"]["open"]:
            await asyncio.sleep(10.0)
        seen["closed_after_s"] = asyncio.get_running_loop().time() - opened_at
        await asyncio.sleep(120.0)
        seen["after"] = agent.thermostat.demand_w
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    assert seen["before"] == {"open": False, "reason": "closed", "events": 0}
    assert seen["detected_after_s"] <= 300.0  # type: ignore[operator]
    demand_w, reason = seen["paused"]  # type: ignore[misc]
    assert demand_w == 0.0 and reason.startswith("open window: room fell")
    assert "open window" in str(seen["explain"])
    assert "window      OPEN (room fell" in str(seen["status"])
    assert 600.0 <= seen["closed_after_s"] <= 1800.0 + 60.0  # type: ignore[operator]
    assert seen["after"] > 100.0  # heating again: the room is below its setpoint


def test_predictive_holds_show_their_reason_in_explain(tmp_path: Path) -> None:
    """The predictor's optimal start and stop set the power themselves: `power explain` says so, with the
    power held, not "setpoint" (the default home schedule from Monday; the room model is ready after a day)."""
    heater, agent = _rig(tmp_path, {"mode": "auto"})
    seen: dict[str, tuple[float, str, str]] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(24 * 3600)  # Tuesday 00:00
        for _ in range(int(22.5 * 60)):  # to 22:30, once a minute
            await asyncio.sleep(60)
            reason = agent.thermostat.limit_reason
            for kind in ("optimal start", "optimal stop"):
                if reason.startswith(f"predictive: {kind}") and kind not in seen:
                    table = explain_table(explain_power(agent.thermostat, agent.power, agent.safety))
                    seen[kind] = (agent.thermostat.demand_w, reason, table)
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    assert set(seen) == {"optimal start", "optimal stop"}, agent.thermostat.status().get("predict")
    demand_w, reason, table = seen["optimal start"]
    assert demand_w == 500.0 and "for 20 °C" in reason and reason in table
    demand_w, reason, table = seen["optimal stop"]
    assert demand_w in (0.0, 140.0) and f"held at {demand_w:.0f} W" in reason and reason in table
