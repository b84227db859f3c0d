"""The one command surface (qrad_agent/ops/commands.py) and the long operations the supervisor owns.

- One schedule grammar: the config file, a platform `set_schedule` command and the local API accept the same
  rules and refuse the same bad rule with the same words.
- The local API and the platform refuse alike (the same `Commands` method answers both).
- An autotune and an identify running at stop end before power goes to the floor, and power never rises
  after stop: the whole agent in-process on hw-sim in virtual time.
- Structure: no module but the supervisor and its two entry points (cli, sim) imports the Agent, and no
  function takes a parameter named ``agent``.
"""

from __future__ import annotations

import ast
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from qrad_agent.agent import Agent
from qrad_agent.api.server import Peer
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.errors import ConfigError, Refused
from qrad_agent.platform import AgentCommands
from qrad_agent.sdnotify import Notifier
from qrad_agent.sync.commands import CommandHandler, Reason, ReplayWindow
from qrad_hwsim.devices.suite import DeviceSuite
from qrad_hwsim.faults import FaultControl
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5, 10)  # a Monday morning
NOW = START.timestamp()
ROOT_PEER = Peer(pid=1, uid=0, gid=0)
PACKAGE = Path(__file__).resolve().parents[2] / "qrad_agent"
GOOD_RULES = [{"days": "weekdays", "start": "06:30:00", "mode": "comfort"},
              {"days": "fri-mon", "start": "22:00", "mode": "eco"}]
BAD_RULES = [{"days": "mon-xyz", "start": "06:30", "mode": "comfort"}]
BAD_WORDS = "schedule rule 0: field 'days' has bad value 'mon-xyz'"


def _config(data: dict[str, Any], schedule: list[dict[str, str]] | None = None) -> dict[str, Any]:
    data["safety"]["identify_gpio_line"] = 24
    if schedule is not None:
        data["thermostat"]["schedule"] = schedule
    return data


def _heater(root: Path, initial_air_c: float = 20.0) -> tuple[SimulatedHeater, FaultControl]:
    """The simulated heater and the control that writes its board devices after each model step."""
    weather = Weather.constant(5.0)
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=initial_air_c), weather, START, seed=3)
    control = FaultControl(root, heater, DeviceSuite(root, np.random.default_rng(4), noise=True), [])
    gpio = root / "class" / "gpio" / "gpio24"
    gpio.mkdir(parents=True, exist_ok=True)
    (gpio / "value").write_text("0")
    control.weather = weather  # type: ignore[attr-defined]
    return heater, control


def _agent(data: dict[str, Any], schedule: list[dict[str, str]] | None = None) -> Agent:
    return Agent(parse_config(_config(data, schedule)), Clock(calendar_start=START, loop_start_s=0.0),
                 Notifier({}))


def _set_schedule(ident: str, rules: list[dict[str, str]]) -> bytes:
    return json.dumps({"v": 1, "command": "set_schedule", "command_id": ident, "issued_at": NOW - 1,
                       "rules": rules}).encode()


def test_one_schedule_grammar_for_config_platform_and_local_api(tmp_path: Path, sysfs_agent_data) -> None:
    _heater(tmp_path / "sys")
    agent = _agent(sysfs_agent_data(tmp_path / "sys"), GOOD_RULES)  # the config file takes them
    assert len(agent.thermostat.schedule.rules) == 2
    platform = CommandHandler(AgentCommands(agent.commands, agent.cfg, None, dict, lambda: None),
                              ReplayWindow(tmp_path / "replay.db", 86400), None, lambda: NOW)
    api = agent.api_handlers()

    async def both() -> tuple[Any, Any]:
        return await platform.handle(_set_schedule("s1", GOOD_RULES)), await platform.handle(
            _set_schedule("s2", BAD_RULES))

    good, bad = asyncio.run(both())
    assert good.ok, good
    assert api["set_schedule"]({"rules": GOOD_RULES}, ROOT_PEER)["mode_setting"] == "comfort"
    with pytest.raises(ConfigError) as config_error:
        _agent(sysfs_agent_data(tmp_path / "sys"), BAD_RULES)
    with pytest.raises(Refused) as api_error:
        api["set_schedule"]({"rules": BAD_RULES}, ROOT_PEER)
    assert not bad.ok and bad.reason is Reason.INVALID
    for text in (str(config_error.value), bad.detail, str(api_error.value)):
        assert BAD_WORDS in text, text
    assert api_error.value.usage


def test_the_local_api_and_the_platform_refuse_alike(tmp_path: Path, sysfs_agent_data) -> None:
    _heater(tmp_path / "sys")
    agent = _agent(sysfs_agent_data(tmp_path / "sys"))
    platform = AgentCommands(agent.commands, agent.cfg, None, dict, lambda: None)
    api = agent.api_handlers()
    for call_api, call_platform in (
            (lambda: api["reset_alarm"]({"code": "fan_failure"}, ROOT_PEER),
             lambda: platform.reset_alarm("fan_failure")),
            (lambda: api["set_mode"]({"mode": "turbo"}, ROOT_PEER), lambda: platform.set_mode("turbo")),
            (lambda: api["cancel_job"]({"job_id": "j1"}, ROOT_PEER), lambda: platform.cancel_job("j1"))):
        with pytest.raises(Refused) as local:
            call_api()
        with pytest.raises(Refused) as remote:
            asyncio.run(call_platform())
        assert str(local.value) == str(remote.value) and str(local.value)
    assert "no latched alarm 'fan_failure'" in str(local.value) or "jobs are disabled" in str(local.value)
    api["set_mode"]({"mode": "eco"}, ROOT_PEER)
    assert agent.thermostat.mode_setting == "eco"


def test_long_operations_end_before_the_floor_and_power_never_rises_after_stop(tmp_path: Path,
                                                                              sysfs_agent_data) -> None:
    root = tmp_path / "sys"
    heater, control = _heater(root, initial_air_c=20.0)
    agent = _agent(sysfs_agent_data(root))

    def on_step(state: Any) -> None:
        control.step(state, control.weather)  # type: ignore[attr-defined]
        trace.append((state.t_s, state.power_w))

    trace: list[tuple[float, float]] = []
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=2.0, on_step=on_step), name="hw-sim")
        task = asyncio.create_task(agent.run(stop), name="agent")
        await asyncio.sleep(300.0)  # a few control periods: the room is within the test's band
        seen["autotune"] = agent.commands.autotune({})
        while agent.tuner.phase != "step" and heater.state.t_s < 4000.0:  # the hold waits for a steady room
            await asyncio.sleep(30.0)
        seen["phase"] = agent.tuner.phase
        seen["identify"] = agent.commands.identify({"count": 600})
        await asyncio.sleep(120.0)
        seen["running"] = {name: agent.operations.running(name) for name in ("autotune", "identify")}
        seen["stop_s"] = heater.state.t_s
        stop.set()
        await asyncio.wait_for(task, 30)
        seen["after_stop"] = {name: agent.operations.running(name) for name in ("autotune", "identify")}
        seen["level"] = agent.power.level
        with pytest.raises(Refused, match="stopping"):
            agent.commands.identify({"count": 3})
        agent.power.set_demand(500.0, agent.clock.monotonic())  # a late caller: refused by the authority
        seen["level_after_late_demand"] = agent.power.level
        await asyncio.sleep(120.0)  # the simulator runs on without the agent
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)

    with capture_logs():
        run_virtual(scenario())
    assert seen["autotune"]["started"] is True and seen["identify"]["blinking"] == 600
    assert seen["phase"] == "step", seen["phase"]
    assert seen["running"] == {"autotune": True, "identify": True}, seen
    assert seen["after_stop"] == {"autotune": False, "identify": False}
    assert seen["level"] == 0.0 and seen["level_after_late_demand"] == 0.0
    assert (root / "class" / "gpio" / "gpio24" / "value").read_text() == "0"  # identify ended with the LED off
    stop_s = float(seen["stop_s"])
    during = [w for t, w in trace if seen["stop_s"] - 60.0 < t <= stop_s]
    after = [w for t, w in trace if t > stop_s + 6.0]  # two model steps for the caps to show in the power
    assert max(during) > 100.0, "the autotune never raised power: the test proves nothing"
    assert after and max(after) <= 60.0, max(after)


def _agent_users() -> list[str]:
    """Modules of the agent package, but the supervisor and its entry points, that import the Agent or
    have a function parameter named ``agent``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("agent.py", "cli.py", "sim.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "qrad_agent.agent":
                found.append(f"{rel}: imports qrad_agent.agent")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs]
                if "agent" in names:
                    found.append(f"{rel}:{node.lineno}: {node.name}(agent)")
    return found


def test_no_component_receives_the_agent() -> None:
    assert _agent_users() == []
