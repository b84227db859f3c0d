"""The predictive-heating part of the platform contract: the set_weather command and the retained
heat-demand forecast (docs/schema/forecast.json), through the real command handler and Reporter logic."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from qrad_agent.config import PredictConfig
from qrad_agent.control.predict import FORECAST_SLOTS, Predictor, PredictSettings
from qrad_agent.control.schedule import ModeSetpoints, default_home
from qrad_agent.ops.commands import Commands
from qrad_agent.errors import Refused
from qrad_agent.platform import AgentCommands, Reporter
from qrad_agent.sync.commands import CommandHandler, CommandRejected, Reason, ReplayWindow
from qrad_agent.sync.contract import DemandForecastMessage, schemas

NOW = 1_800_000_000.0
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"


def cmd(ident: str, points: Any) -> bytes:
    return json.dumps({"v": 1, "command": "set_weather", "command_id": ident, "issued_at": NOW - 1,
                       "expires_at": NOW + 60, "points": points}).encode()


class WeatherTarget:
    def __init__(self) -> None:
        self.points: list[tuple[float, float, float]] = []

    async def set_weather(self, points: list[tuple[float, float, float]]) -> None:
        if points[0][0] < 0:
            raise CommandRejected("before 1970")
        self.points = points


async def test_set_weather_accepted_invalid_and_rejected(tmp_path) -> None:
    target = WeatherTarget()
    handler = CommandHandler(target, ReplayWindow(tmp_path / "replay.db", 86400), None, lambda: NOW)  # type: ignore[arg-type]
    ok = await handler.handle(cmd("w1", [{"t": NOW + 3600 * h, "outdoor_c": 3.5, "ghi_w_m2": 120.0} for h in range(48)]))
    assert ok.ok and len(target.points) == 48 and target.points[0] == (NOW, 3.5, 120.0)
    for ident, points in (("w2", [{"t": NOW, "outdoor_c": 99.0}]), ("w3", []),
                          ("w4", [{"t": NOW, "outdoor_c": 3.0, "ghi_w_m2": -5.0}]),
                          ("w5", [{"t": NOW, "outdoor_c": "3"}]), ("w6", [{"t": NOW, "outdoor_c": 3.0, "x": 1}]),
                          ("w7", [{"t": NOW, "outdoor_c": 3.0}] * 241)):
        answer = await handler.handle(cmd(ident, points))
        assert (answer.ok, answer.reason) == (False, Reason.INVALID), points[:1]
    refused = await handler.handle(cmd("w8", [{"t": -10.0, "outdoor_c": 3.0}]))
    assert (refused.ok, refused.reason) == (False, Reason.REJECTED)
    assert len(target.points) == 48


def fake_agent(predictor: Predictor | None, now: datetime) -> Any:
    schedule = default_home(ModeSetpoints(20.0, 19.0, 7.0))
    loop_s = [0.0]
    clock = SimpleNamespace(now=lambda: now, monotonic=lambda: loop_s[0])  # the calendar stands still
    cfg = SimpleNamespace(thermostat=SimpleNamespace(predict=PredictConfig(enabled=True)), jobs=SimpleNamespace(cpus=8),
                          sync=None, fire=SimpleNamespace(occupancy_channels=[]), state_dir=Path("/nonexistent"))
    agent = SimpleNamespace(thermostat=SimpleNamespace(predictor=predictor, schedule=schedule), clock=clock,
                            cfg=cfg, jobs=object(), power=SimpleNamespace(cfg=SimpleNamespace(max_w=500.0)),
                            hub=SimpleNamespace(specs={}))
    agent.loop_s = loop_s
    agent.commands = Commands(agent.thermostat, None, None, None, None, None, None,  # type: ignore[arg-type]
                              lambda: None, clock.now)
    return agent


def platform_commands(agent: Any) -> AgentCommands:
    return AgentCommands(agent.commands, agent.cfg, None, dict, lambda: None)


async def test_agent_applies_the_weather_to_its_predictor() -> None:
    predictor = Predictor(PredictSettings(), 0.0, 500.0)
    agent = fake_agent(predictor, datetime(2026, 1, 5, 12))
    start = datetime(2026, 1, 5, 13).timestamp()
    await platform_commands(agent).set_weather([(start + 3600 * h, 2.0 + h, 0.0) for h in range(3)])
    assert predictor.outdoor_at(predictor.outdoor.times_s[0] + 1800)[0] == pytest.approx(2.5)
    with pytest.raises(Refused, match="weather refused"):
        await platform_commands(agent).set_weather([(start, 2.0, 0.0), (start + 60, 2.0, 2000.0)])
    with pytest.raises(Refused, match="predictive heating is disabled"):
        await platform_commands(fake_agent(None, datetime(2026, 1, 5))).set_weather([(start, 2.0, 0.0)])


class RecordingSync:
    def __init__(self) -> None:
        self.published: list[DemandForecastMessage] = []

    def set_forecast(self, message: DemandForecastMessage) -> None:
        self.published.append(message)


def day_of_history(predictor: Predictor, start: datetime) -> datetime:
    """Feed a day and a slot of observations (room 19 °C, power rising through each hour)."""
    now = start
    for k in range(int(25 * 3600 / 30)):
        now = start + timedelta(seconds=30 * k)
        predictor.observe(now, 19.0, 100.0 + 10.0 * now.hour)
    return now


def test_reporter_publishes_persistence_then_only_on_period_or_change() -> None:
    predictor = Predictor(PredictSettings(), 0.0, 500.0)
    now = day_of_history(predictor, datetime(2026, 1, 5))
    agent = fake_agent(predictor, now)
    sync = RecordingSync()
    reporter = Reporter(agent.cfg, agent, sync)
    assert reporter.maybe_publish_forecast()
    message = sync.published[-1]
    assert message.method == "persistence" and len(message.heat_demand_w) == FORECAST_SLOTS
    assert message.heat_demand_w[0] == pytest.approx(100.0 + 10.0 * (now - timedelta(days=1)).hour, abs=1.0)
    assert max(message.compute_capacity_cores) <= 8 and message.weather == "none"
    assert message.t0 == predictor.slot_start(now).timestamp() and message.t0 % 900 == 0  # unix s, slot grid
    agent.loop_s[0] = 60.0
    assert not reporter.maybe_publish_forecast()  # nothing moved, the hour is not up
    agent.loop_s[0] = 3600.0
    assert reporter.maybe_publish_forecast() and len(sync.published) == 2
    # the schema in docs/ is the exported model's, and the message is its JSON
    on_disk = json.loads((SCHEMA_DIR / "forecast.json").read_text())
    assert on_disk == json.loads(json.dumps(schemas()["forecast"], sort_keys=True))
    assert DemandForecastMessage.model_validate_json(message.model_dump_json()) == message


def test_forecast_message_refuses_bad_values() -> None:
    base = {"issued_at": NOW, "t0": NOW, "heat_demand_w": [100.0] * 96, "compute_capacity_cores": [2.0] * 96,
            "method": "model"}
    DemandForecastMessage(**base)
    for bad in ({"heat_demand_w": [-1.0] * 96}, {"heat_demand_w": [1.0] * 97}, {"method": "guess"},
                {"slot_s": 0.0}, {"extra": 1}):
        with pytest.raises(ValidationError):
            DemandForecastMessage(**{**base, **bad})


def test_no_predictor_no_forecast() -> None:
    agent = fake_agent(None, datetime(2026, 1, 5))
    assert Reporter(agent.cfg, agent, RecordingSync()).maybe_publish_forecast() is False
