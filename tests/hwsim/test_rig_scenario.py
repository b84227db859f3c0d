"""The rig's scenario files: the shipped one parses, bad ones are refused naming the fault, fires and
occupants are placed on the scenario's timeline."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from qrad_hwsim.rig import RIGS_DIR, FirePlay, FireSpec, ScheduledOccupancy, load_scenario, parse_scenario

MINIMAL = {"start": "2026-01-07T06:00", "duration_s": 600}


def test_the_shipped_winter_day_parses_by_name() -> None:
    scenario = load_scenario("winter_day")
    assert scenario == load_scenario(RIGS_DIR / "winter_day.toml")
    assert scenario.start == datetime(2026, 1, 7, 6) and scenario.outdoor_c == 3.0
    assert [(f.device, f.kind) for f in scenario.faults] == [("room", "stuck")]
    assert scenario.fire is not None and scenario.fire.scenario == "flaming"
    assert scenario.output_lines == [23]
    assert {e["kind"] for e in scenario.expectations} == {"mean_power_above", "air_within", "gpio_set_after",
                                                           "power_floor_after"}
    assert scenario.duration_s / scenario.speed <= 240  # the rig test's budget
    assert scenario.kpi_window_s == (0.0, scenario.fire.at_s)


def test_the_shipped_scenarios_are_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "hw-sim" / "pyproject.toml").read_text())
    assert "rigs/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["qrad_hwsim"]


def test_defaults_of_a_minimal_scenario() -> None:
    scenario = parse_scenario(MINIMAL)
    assert (scenario.speed, scenario.step_s, scenario.fire, scenario.expectations) == (60.0, 10.0, None, ())
    assert scenario.outdoor_c is None and scenario.weather_file is None  # the default weather file


@pytest.mark.parametrize(("data", "message"), [
    ({"duration_s": 600}, "missing key 'start'"),
    (MINIMAL | {"sped": 60}, "unknown keys ['sped']"),
    (MINIMAL | {"weather": {"outdoor": 3}}, "[weather]: allowed keys"),
    (MINIMAL | {"speed": 0}, "must be > 0"),
    (MINIMAL | {"fire": {"at_s": 10, "scenario": "no_such_fire"}}, "no_such_fire"),
    (MINIMAL | {"fault": [{"at_s": 10, "device": "room"}]}, "missing key 'kind'"),
    (MINIMAL | {"expect": [{"kind": "air_above"}]}, "expect[0]: kind must be one of"),
    (MINIMAL | {"expect": [{"kind": "air_within", "from_s": 0, "to_s": 10, "setpoint_c": 20}]},
     "air_within needs 'band_k'"),
    (MINIMAL | {"expect": [{"kind": "gpio_set_after", "line": 23, "after": "fire", "within_s": 60,
                            "pin": 2}]}, "unknown keys ['pin']"),
    (MINIMAL | {"expect": [{"kind": "gpio_set_after", "line": "23", "after": "fire", "within_s": 60}]},
     "expect[0].line"),
    (MINIMAL | {"expect": [{"kind": "power_floor_after", "after": "fire", "within_s": 60, "floor_w": 60,
                            "hold": 1}]}, "expect[0].hold"),
])
def test_a_bad_scenario_is_refused_naming_the_fault(data: dict, message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        parse_scenario(data)
    assert message in str(info.value)


def test_a_bad_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('start = "2026-01-07T06:00"\nduration_s = "long"\n')
    with pytest.raises(ValueError, match="bad.toml"):
        load_scenario(path)


def test_occupants_follow_the_schedule() -> None:
    occupancy = ScheduledOccupancy(datetime(2026, 1, 7, 6), ((1800.0, 2), (7200.0, 1)))
    assert [occupancy.occupants(datetime(2026, 1, 7, h, m)) for h, m in ((6, 0), (6, 30), (7, 59), (8, 0))] \
        == [0, 2, 2, 1]


def test_the_fire_is_placed_at_the_rigs_time(tmp_path: Path) -> None:
    fire = FirePlay(FireSpec(at_s=5000.0, scenario="flaming", peak_kw=50.0), tmp_path)
    assert fire.hrr_w(4999.0) == 0.0
    assert fire.hrr_w(5060.0) == pytest.approx(1000 * 0.0117 * 60**2)  # flaming's t-squared growth
    assert fire.hrr_w(6000.0) == 50_000.0  # capped at peak_kw
    assert fire.due_sounds(5029.0) == []
    (sound,) = fire.due_sounds(5030.0)  # flaming's smoke alarm: 30 s after ignition
    assert sound.stat().st_size > 2 * 16000 * 200  # rendered for its real duration (270 s)
    assert fire.due_sounds(5100.0) == []  # once
