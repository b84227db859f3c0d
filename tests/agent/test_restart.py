"""Restart in the middle of a cold morning: power resumes where it was, no windup, no extra overshoot.

The daemon's own Agent (sensor hub, thermostat with its PID, power manager, safety layer) runs against hw-sim's
heater in virtual time, as `qrad-agent sim` does, on a constant 2 °C morning: eco (19 °C) until 06:30, then
comfort (20 °C); the warm-up holds the heater at 500 W. One run is uninterrupted; the other stops the
agent at 06:50, in the middle of the warm-up (the stop path saves the state), leaves the heater at minimum power for a 2 min outage, and starts a new
Agent on the same state_dir (restore_state). Same seed, same weather, same sysfs tree layout.

Note: Agent.restore_state restores the PID only when the state is younger than STATE_MAX_AGE_S on the wall
clock (time.time()); in virtual time the wall clock barely moves, so the 2 min outage reads as ~0 s old.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import sim_config

pytest.importorskip("qrad_hwsim")
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater  # noqa: E402
from qrad_hwsim.virtual_time import run_virtual  # noqa: E402
from qrad_hwsim.weather import Weather  # noqa: E402

START = datetime(2024, 1, 15, 3, 0)  # a Monday, 03:00
COMFORT_AT_S = 3.5 * 3600.0  # 06:30
STOP_AT_S = COMFORT_AT_S + 20 * 60.0  # 06:50, warming up
OUTAGE_S = 120.0
END_S = 9 * 3600.0  # 12:00
STEP_S = 29.9  # not a divisor of the 30 s control period: no heater and control step on the same instant
OUTDOOR_C = 2.0
THERMOSTAT = {
    "mode": "auto",
    "setpoints": {"comfort_c": 20.0, "eco_c": 19.0, "frost_c": 7.0},
    "schedule": [{"days": "daily", "start": "00:00", "mode": "eco"},
                 {"days": "daily", "start": "06:30", "mode": "comfort"}],
}


async def _morning(root: Path, restart: bool, crash: bool = False) -> dict[str, np.ndarray]:
    cfg = sim_config(root, THERMOSTAT)
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=19.0), Weather.constant(OUTDOOR_C), START, seed=3)
    t, air, power = [], [], []

    def record(state) -> None:
        t.append(state.t_s)
        air.append(state.air_c)
        power.append(state.power_w)

    heater_task = asyncio.create_task(heater.run(step_s=STEP_S, on_step=record), name="hw-sim")

    def new_agent() -> Agent:
        return Agent(cfg, Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))

    async def run_agent(agent: Agent, until_s: float) -> bytes:
        """Run until ``until_s``; returns the state file as it was on disk just before the stop."""
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop), name="agent")
        await asyncio.sleep(until_s - asyncio.get_running_loop().time())
        assert not task.done(), task
        on_disk = agent.state_path.read_bytes() if agent.state_path.exists() else b""
        stop.set()
        await task
        return on_disk

    try:
        if restart:
            first = new_agent()
            on_disk = await run_agent(first, STOP_AT_S)
            if crash:  # kill -9 at STOP_AT_S: no stop path; the next agent finds what was on disk then
                first.state_path.write_bytes(on_disk)
            state_before = first.state()
            await asyncio.sleep(OUTAGE_S)
            await run_agent(new_agent(), END_S)
        else:
            state_before = None
            await run_agent(new_agent(), END_S)
    finally:
        heater_task.cancel()
        await asyncio.gather(heater_task, return_exceptions=True)
    return {"t": np.asarray(t), "air": np.asarray(air), "power": np.asarray(power), "state": state_before}


@pytest.fixture
def scratch(tmp_path):
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="qrad-restart-", dir=shm) as tmp:
        yield Path(tmp)


def _mean(run: dict, start_s: float, end_s: float) -> float:
    keep = (run["t"] > start_s) & (run["t"] <= end_s)
    return float(run["power"][keep].mean())


@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill-9"])
def test_restart_mid_warm_up_resumes_power_without_windup(scratch, crash: bool):
    """A clean stop saves the state; a kill -9 leaves what the periodic save last wrote (at most
    STATE_SAVE_PERIOD_S old): both resume the same."""
    straight = run_virtual(_morning(scratch / "straight", restart=False))
    restarted = run_virtual(_morning(scratch / "restarted", restart=True, crash=crash))
    max_w = sim_config(scratch / "cfg").power.max_w

    before_w = _mean(restarted, STOP_AT_S - 300.0, STOP_AT_S)
    resume_s = STOP_AT_S + OUTAGE_S
    after_w = _mean(restarted, resume_s + 60.0, resume_s + 360.0)  # once the hub has its first readings
    assert "output_w" in restarted["state"]["pid"]  # the stop saved a running controller
    comfort = straight["t"] > COMFORT_AT_S
    overshoot_straight = straight["air"][comfort].max() - 20.0
    overshoot_restarted = restarted["air"][restarted["t"] > COMFORT_AT_S].max() - 20.0
    print(f"\nsaved PID state {restarted['state']['pid']}")
    print(f"power before stop {before_w:.0f} W, after restart {after_w:.0f} W (max {max_w:.0f} W); "
          f"peak above 20 °C: uninterrupted {overshoot_straight:+.3f} K, restarted {overshoot_restarted:+.3f} K")
    assert abs(after_w - before_w) <= 0.05 * max_w
    assert overshoot_restarted - overshoot_straight <= 0.1
    assert abs(restarted["air"][-1] - straight["air"][-1]) < 0.1  # both back on the setpoint
