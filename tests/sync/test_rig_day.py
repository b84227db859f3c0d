"""The rig test: a winter morning on hw-sim with every sensor live, a room-sensor fault, a broker outage and a
fire, against the whole agent and a real broker. Every expectation in one run.

hw-sim runs 60x (a simulated minute per real second) with the agent's control period scaled to match.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import example_config_data
from qrad_hwsim.devices.audio import T3_PATTERN
from qrad_hwsim.devices.suite import DeviceSuite
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

SPEED = 60.0


async def _until(predicate, timeout_s: float) -> bool:
    """Poll ``predicate`` every 0.1 s until it holds (True) or ``timeout_s`` real seconds pass (False)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def _config(tmp_path: Path, root: Path, sync_cfg) -> dict:
    text_root = str(root)
    data = example_config_data()
    data.update(device_id="heater-1", state_dir=str(tmp_path / "state"))
    data["api"] = {"socket_path": str(tmp_path / "api.sock")}
    data["power"].update(sysfs_root=text_root, jobs_cgroup=f"{text_root}/fs/cgroup/qrad-jobs",
                         heartbeat_timeout_s=10.0)
    for sensor in data["sensors"]:
        if "port" in sensor:
            sensor["port"] = sensor["port"].replace("/tmp/qrad-hwsim", text_root)
        if "path" in sensor:
            sensor["path"] = sensor["path"].replace("/tmp/qrad-hwsim", text_root)
        if sensor["type"] in ("hwmon", "iio", "w1_therm"):
            sensor["period_s"] = 1.0
    sht = next(s for s in data["sensors"] if s["name"] == "room_sht4x")
    sht["stuck_after_s"] = 20.0  # a stuck SHT4x is noticed within 20 s (20 simulated minutes)
    data["thermostat"].update(mode="comfort", period_s=30 / SPEED, stale_after_s=10.0)
    data["thermostat"]["pid"] = {"kp_w_per_k": 1400.0, "ti_s": 1100 / SPEED}
    data["thermostat"]["window"] = {"drop_window_s": 300.0 / SPEED, "max_pause_s": 1800.0 / SPEED}
    data["safety"]["surface_channel"] = None  # thermal protection's timings are real-time; not this test's subject
    sync = sync_cfg(telemetry_period_s=2.0, state_period_s=1.0).model_dump(mode="json")
    data["sync"] = {k: v for k, v in sync.items() if v is not None}
    return data


async def test_winter_morning_with_sensor_fault_broker_outage_and_fire(tmp_path: Path, sync_cfg, platform,
                                                                      broker) -> None:
    root = tmp_path / "sys"
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=19.0), Weather.constant(-2.0), datetime(2026, 1, 7, 6),
                             seed=5)
    suite = DeviceSuite(root, np.random.default_rng(6), noise=True)
    await suite.start()
    last_t = [0.0]

    def on_step(state) -> None:
        suite.update(state, heater.wall_time(state.t_s), state.t_s - last_t[0], 101325.0, 0.0)
        last_t[0] = state.t_s
        heater.internal_w = suite.internal_gains_w

    agent = Agent(parse_config(_config(tmp_path, root, sync_cfg)), Clock(), Notifier({}))
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=SPEED, on_step=on_step))
    task = asyncio.create_task(agent.run(stop))
    device = lambda p: p.devices["heater-1"]  # noqa: E731
    try:
        # 1. A cold morning (-2 °C outside): the heater works at full power toward 20 °C, every channel live.
        def live() -> int:
            return sum(ch["quality"] == "ok" for ch in agent.hub.status()["channels"].values())

        # 20 simulated minutes (on the simulator's clock, however fast this machine runs it), every channel live.
        assert await _until(lambda: heater.state.t_s >= 20 * 60 and live() >= 26, 120), agent.hub.status()
        assert heater.state.power_w > 300 and heater.state.air_c >= 19.0, (  # at -2 °C: full power holds the room
            repr(agent.thermostat.status()), agent.safety.status())
        # 2. The SHT4x freezes: it is flagged STALE and the thermostat carries on with the DS18B20.
        heater.sensor.set_fault("stuck")
        assert await _until(lambda: agent.hub.latest["room_temp"].quality.value == "stale", 60)
        assert agent.thermostat.limit_reason in ("setpoint", "at maximum power")
        assert heater.state.power_w > 100  # still heating on the redundant sensor
        # 3. The broker goes away; telemetry keeps being stored.
        before = max(device(platform).seen, default=0)
        broker.stop()
        await asyncio.sleep(5)
        # 4. A flaming fire: heat and CO2 in the room, the neighbouring smoke alarm's T3 at 3.1 kHz.
        fire_started = time.monotonic()
        suite.fire_hrr_w = 30_000.0
        suite.audio.add_tone(3100.0, 85.0, T3_PATTERN)
        while agent.fire.decision is None or agent.fire.decision.state.value != "alarm":
            assert time.monotonic() - fire_started < 60, agent.fire.status()
            await asyncio.sleep(0.2)
        alarm_at = time.monotonic()
        while heater.state.power_w > 60:
            assert time.monotonic() - alarm_at < 1.5
            await asyncio.sleep(0.05)
        assert "fire_alarm" in agent.safety.conditions
        # 5. The broker is back: the alarm arrives once, and everything stored during the outage arrives.
        broker.start()
        assert await platform.wait(lambda p: any(m["kind"] == "alarm" for m in device(p).messages.values()), 30)
        log = device(platform)
        assert await _until(lambda: max(log.seen) > before and log.missing(max(log.seen)) == [], 30)  # caught up
        alarms = [m for m in log.messages.values() if m["kind"] == "alarm"]
        assert len(alarms) == 1 and alarms[0]["body"]["state"] == "raised"
        assert log.missing(max(log.seen)) == [] and max(log.seen) > before
        assert heater.state.power_w <= 60  # latched until reset
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
        await suite.stop()
