"""Privacy: presence, sound level and door/window contacts leave the home only as hourly / daily aggregates
by default; per channel `send`, `aggregate` or `local`."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from qrad_drivers.base import Reading
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.errors import ConfigError
from qrad_agent.platform import Reporter
from qrad_agent.sdnotify import Notifier
from qrad_agent.sync.privacy import ChannelAggregator, Personal, local_day_start

HOUR = 3600.0
T0 = 1_800_000_000.0 - 1_800_000_000.0 % HOUR  # an hour boundary


def test_occupancy_fraction_laeq_and_openings() -> None:
    occupancy = ChannelAggregator("presence", Personal.OCCUPANCY, local_day_start)
    sound = ChannelAggregator("sound", Personal.SOUND, local_day_start)
    for i in range(60):  # one sample a minute; occupied 15 of 60 minutes
        occupancy.add(T0 + 60 * i, 1.0 if i < 15 else 0.0, True)
        sound.add(T0 + 60 * i, 70.0 if i < 6 else 30.0, True)  # 6 loud minutes dominate the energy mean
    occupancy.add(T0 + 10, 1.0, True)  # older than the last sample: ignored
    sound.add(T0 + 3599, math.nan, False)
    assert occupancy.flush(T0 + HOUR - 1) == []  # the hour is not over
    (occ,) = occupancy.flush(T0 + HOUR)
    assert (occ.channel, occ.t, occ.value, occ.unit) == ("presence_occupancy_1h", T0 + HOUR, 0.25, "1")
    (leq,) = sound.flush(T0 + HOUR)
    expected = 10 * math.log10((6 * 1e7 + 54 * 1e3) / 60)  # = 60.0 dB(A)
    assert leq.channel == "sound_laeq_1h" and leq.value == pytest.approx(expected) and leq.unit == "dB(A)"
    assert occupancy.flush(T0 + 5 * HOUR) == []  # no samples since: nothing more to send

    door = ChannelAggregator("door", Personal.CONTACT, local_day_start)
    day = local_day_start(T0)
    for k, value in enumerate([0, 1, 1, 0, 1, 0, 0, 1]):  # three openings (0 -> 1)
        door.add(day + 3 * HOUR + 60 * k, float(value), True)
    door.add(day + 4 * HOUR, math.nan, False)
    assert door.flush(day + 12 * HOUR) == []
    (openings,) = door.flush(day + 25 * HOUR)
    assert openings.channel == "door_openings_1d" and openings.value == 3.0 and openings.unit == "count"


def test_an_hour_without_good_samples_is_missing() -> None:
    occupancy = ChannelAggregator("presence", Personal.OCCUPANCY, local_day_start)
    occupancy.add(T0 + 5, math.nan, False)
    (agg,) = occupancy.flush(T0 + HOUR)
    assert agg.value is None


def _agent(tmp_path: Path, heater_agent_data, privacy: dict[str, str] | None = None) -> Agent:
    SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=19.5), Weather.constant(5.0), datetime(2026, 1, 5))
    from qrad_agent.sim import example_config_data

    example = example_config_data()
    data = heater_agent_data(**({"privacy": privacy} if privacy is not None else {}))
    data["sensors"] += [s for s in example["sensors"] if s["type"] in ("gpio", "audio")]
    data["fire"] = {**data.get("fire", {}), "occupancy_channels": ["presence"]}
    return Agent(parse_config(data), Clock(), Notifier({}))


def _feed(agent: Agent, t_s: float, presence: float, window: float, sound_db: float) -> None:
    agent.hub.store([Reading("presence", presence, "bool", t_s), Reading("window", window, "bool", t_s),
                     Reading("door", 0.0, "bool", t_s), Reading("sound", sound_db, "dB(A)", t_s)])


async def test_personal_channels_leave_only_as_aggregates_by_default(tmp_path: Path, heater_agent_data) -> None:
    agent = _agent(tmp_path, heater_agent_data)
    wall = [T0 + HOUR - 120.0]
    reporter = Reporter(agent.cfg, agent.parts, None, wall_clock=lambda: wall[0])
    mono = agent.clock.monotonic()
    for i in range(4):
        _feed(agent, mono + i, presence=1.0 if i % 2 else 0.0, window=float(i >= 2), sound_db=45.0)
    agent.hub.store([Reading("room_temp", 20.5, "°C", mono + 3)])
    first = {r.channel: r for r in reporter.telemetry().readings}
    assert "room_temp" in first  # not personal: sent as before
    assert not {"presence", "window", "door", "sound"} & set(first), first.keys()
    assert not any(name.endswith(("_1h", "_1d")) for name in first)  # the hour is not over yet
    wall[0] = T0 + HOUR + 60.0  # the hour has closed
    later = agent.clock.monotonic()
    _feed(agent, later + 10, presence=1.0, window=1.0, sound_db=45.0)
    second = {r.channel: r for r in reporter.telemetry().readings}
    assert second["presence_occupancy_1h"].value == 0.5 and second["presence_occupancy_1h"].t == T0 + HOUR
    assert second["sound_laeq_1h"].value == pytest.approx(45.0)
    assert not {"presence", "window", "door", "sound"} & set(second)


async def test_send_and_local_per_channel(tmp_path: Path, heater_agent_data) -> None:
    agent = _agent(tmp_path, heater_agent_data, {"window": "send", "sound": "local", "presence": "local"})
    reporter = Reporter(agent.cfg, agent.parts, None)
    _feed(agent, agent.clock.monotonic(), presence=1.0, window=1.0, sound_db=50.0)
    channels = {r.channel for r in reporter.telemetry().readings}
    assert "window" in channels and "sound" not in channels and "presence" not in channels
    assert reporter.aggregators.keys() == {"door"}


@pytest.mark.parametrize("privacy, words", [({"nosuch": "send"}, "unknown channels"),
                                            ({"room_temp": "aggregate"}, "aggregate")])
def test_a_bad_privacy_table_is_a_config_error(tmp_path: Path, heater_agent_data, privacy, words) -> None:
    with pytest.raises(ConfigError) as exc:
        _agent(tmp_path, heater_agent_data, privacy)
    assert words in str(exc.value)
