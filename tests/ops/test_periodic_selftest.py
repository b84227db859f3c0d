"""The agent runs its self-test by itself: a failure is an event and a degraded status, and the code and
configuration checks compare what is on disk with what the agent started with (they can fail)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from structlog.testing import capture_logs

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.ops.periodic import SELFTEST_FIRST_S, SELFTEST_PERIOD_S
from qrad_agent.sdnotify import Notifier
from qrad_agent.config import load_config
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5)


def _config_toml(root: Path) -> str:
    return f"""
device_id = "selftest-0001"
state_dir = "{root}/state"
[api]
socket_path = "{root}/api.sock"
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
[thermostat]
mode = "comfort"
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 10.0
[fire]
enabled = false
"""


def _ours(failed: list[str]) -> list[str]:
    """The failures this test provokes (virtual time also fails the wall-clock check, which is not ours)."""
    return [f for f in failed if f.startswith(("sensor room_temp", "config unchanged"))]


def test_a_failing_check_is_an_event_and_a_degraded_status_then_clears(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(_config_toml(tmp_path))
    cfg = load_config(config_file)
    heater = SimulatedHeater(tmp_path, HeaterSpec(initial_air_c=19.0), Weather.constant(5.0), START, seed=1)
    agent = Agent(cfg, Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))
    agent.run_info.config_path = config_file
    agent.periodic_selftest.enabled = True
    seen: dict[str, object] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=10.0))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(SELFTEST_FIRST_S + 60)
        seen["first"] = agent.status()["selftest"]
        heater.sensor.set_fault("missing")
        config_file.write_text(config_file.read_text().replace('mode = "comfort"', 'mode = "eco"'))
        await asyncio.sleep(SELFTEST_PERIOD_S)
        seen["second"] = agent.status()["selftest"]
        heater.sensor.set_fault("ok")
        config_file.write_text(config_file.read_text().replace('mode = "eco"', 'mode = "comfort"'))
        await asyncio.sleep(SELFTEST_PERIOD_S)
        seen["third"] = agent.status()["selftest"]
        stop.set()
        await task
        sim.cancel()

    with capture_logs() as logs:
        run_virtual(scenario())
    first, second, third = (seen[k] for k in ("first", "second", "third"))
    assert first["runs"] == 1 and _ours(first["failed"]) == [], first  # type: ignore[index]
    assert second["runs"] == 2  # type: ignore[index]
    failed = " | ".join(_ours(second["failed"]))  # type: ignore[index]
    assert "sensor room_temp" in failed and "config unchanged since start" in failed, failed
    assert "restart to apply it" in failed
    assert third["runs"] == 3 and _ours(third["failed"]) == [], third  # type: ignore[index]
    events = [e for e in logs if e["event"] == "selftest failed"]
    assert any(any("room_temp" in f for f in e["failed"]) for e in events)
