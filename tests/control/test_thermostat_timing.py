"""The thermostat's step timing on hw-sim (virtual time): steps at the same clock time, and a suspend."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import VirtualTimeLoop, run_virtual
from qrad_hwsim.weather import Weather
from structlog.testing import capture_logs

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.control.thermostat import GAP_PERIODS
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import sim_config

START = datetime(2026, 1, 5)


def _rig(root: Path, initial_air_c: float) -> tuple[SimulatedHeater, Agent]:
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=initial_air_c), Weather.constant(0.0), START, seed=1)
    cfg = sim_config(root, {"mode": "comfort"})
    return heater, Agent(cfg, Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))


def test_steps_at_the_same_clock_time_keep_the_output(tmp_path: Path) -> None:
    """The issue's fault: two steps at one clock time dropped 500 W to 0 W with reason "mode off"."""
    heater, agent = _rig(tmp_path, initial_air_c=15.0)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(1800)  # a cold room: full power
        thermostat = agent.thermostat
        seen["first"] = thermostat.step()
        seen["again"] = [thermostat.step() for _ in range(3)]  # same loop time: dt = 0
        seen["reason"] = thermostat.limit_reason
        seen["power_demand_w"] = agent.power.demand_w
        seen["skipped"] = thermostat.status()["skipped_steps"]
        stop.set()
        await task
        sim.cancel()

    with capture_logs() as logs:
        run_virtual(scenario())
    assert seen["first"] == 500.0
    assert seen["again"] == [500.0, 500.0, 500.0]
    assert seen["reason"] == "at maximum power" and seen["power_demand_w"] == 500.0
    assert seen["skipped"] == 3
    assert len([e for e in logs if e["event"].startswith("control step skipped")]) == 1


def test_a_suspend_restarts_the_controller_from_the_current_output(tmp_path: Path) -> None:
    """A day without a step (the loop clock jumps, as after a suspend): no burst of steps catches up the
    missed periods; the first step that runs the controller restarts it from the output in place (the power
    manager's demand then: the floor after a step that found the reading a day old, or while safety holds
    it there after the silent day) instead of resuming a day-old state, and says so."""
    heater, agent = _rig(tmp_path, initial_air_c=19.5)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(4 * 3600)  # regulated near 20 °C, below full power
        thermostat = agent.thermostat
        seen["before_w"] = thermostat.demand_w
        after: list[tuple[str, float, float, float]] = []
        step = thermostat.step

        def recorded() -> float:
            in_place_w = agent.power.demand_w
            demand_w = step()
            after.append((thermostat.limit_reason, demand_w, thermostat.step_times_s[-1], in_place_w))
            return demand_w

        thermostat.step = recorded  # type: ignore[method-assign]
        loop._advance(86400.0)  # the clock jumps; nothing ran in between
        await asyncio.sleep(10 * 60)
        seen["after"] = after
        seen["gaps"], seen["skipped"] = thermostat.gaps, thermostat.skipped_steps
        stop.set()
        await task
        sim.cancel()

    with capture_logs() as logs:
        run_virtual(scenario())
    assert 50.0 < float(seen["before_w"]) < 500.0, seen
    after = seen["after"]
    assert isinstance(after, list) and len(after) >= 19
    times = [t for _, _, t, _ in after]
    assert len(set(times)) == len(times), after  # one step per period, no burst at the resume time
    assert seen["gaps"] == 1 and seen["skipped"] == 0, seen
    gap_logs = [e for e in logs if e["event"].startswith("control gap")]
    assert len(gap_logs) == 1 and gap_logs[0]["gap_s"] > GAP_PERIODS * agent.cfg.thermostat.period_s
    # the first step that ran the controller (a first step may find the reading a day old: minimum power)
    _, first_w, _, in_place_w = next(a for a in after if not a[0].startswith("no valid room temperature"))
    # one step of the reference's ramp (P) and of the integral away from the output in place, not the
    # day-old state's output
    assert abs(first_w - in_place_w) < 60.0, after
    assert abs(first_w - float(seen["before_w"])) > 100.0 or abs(in_place_w - float(seen["before_w"])) < 60.0
    steps_w = [abs(b[1] - a[1]) for a, b in zip(after, after[1:])]
    assert max(steps_w) < 120.0, after  # bounded moves afterwards (ramp plus integral), no jump to a limit


def test_status_gives_the_end_of_an_override(tmp_path: Path) -> None:
    heater, agent = _rig(tmp_path, initial_air_c=19.0)
    seen: dict[str, dict] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(60)
        agent.thermostat.set_override(23.0, 7200.0)
        await asyncio.sleep(600)
        seen["timed"] = agent.thermostat.status()
        agent.thermostat.set_override(22.0, None)
        seen["held"] = agent.thermostat.status()
        agent.thermostat.clear_override()
        seen["cleared"] = agent.thermostat.status()
        stop.set()
        await task
        sim.cancel()

    run_virtual(scenario())
    timed = seen["timed"]
    assert timed["override_remaining_s"] == pytest.approx(6600.0, abs=1.0)
    assert timed["override_until"] == "2026-01-05T02:01"  # 60 s + 2 h after the simulated midnight start
    assert seen["held"]["override_until"] is None and seen["held"]["override_remaining_s"] is None
    assert "override_until" not in seen["cleared"]
