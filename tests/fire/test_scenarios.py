"""hw-sim fire scenarios through the engine: fires reach ALARM, nuisances never do; real data sets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qrad_hwsim.fire import player

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fire as bench

SPECS = {p.stem: player.load(p) for p in sorted(player.SCENARIO_DIR.glob("*.json"))}
FIRES = [n for n, s in SPECS.items() if s["kind"] == "fire"]
NUISANCES = [n for n, s in SPECS.items() if s["kind"] == "nuisance" and s.get("days") is None]


@pytest.mark.parametrize("name", FIRES)
def test_every_fire_reaches_alarm(name: str) -> None:
    r = bench.run_scenario(SPECS[name])
    assert r["detected"] and r["false_alarms"] == 0, r
    if name.startswith("flaming") and "no_alarm" not in name:
        assert r["latency_s"] <= 60.0, r


@pytest.mark.parametrize("name", NUISANCES)
def test_nuisances_never_alarm(name: str) -> None:
    assert bench.run_scenario(SPECS[name])["false_alarms"] == 0


def test_scenario_files_are_data(tmp_path: Path) -> None:
    """A new scenario is a file: a copy with a different fire growth plays without code."""
    spec = dict(SPECS["flaming_no_alarm_sound"], name="fast")
    spec["events"] = [dict(e, alpha_kw_s2=0.0469) if e["type"] == "fire" else e for e in spec["events"]]
    path = tmp_path / "fast.json"
    path.write_text(__import__("json").dumps(spec))
    r = bench.run_scenario(player.load(path))
    assert r["detected"] and r["latency_s"] < bench.run_scenario(SPECS["flaming_no_alarm_sound"])["latency_s"]


def test_uci_office_night_spike_at_2_s_is_at_most_one_pre_alarm(excerpts: Path) -> None:
    """The office at night (UCI excerpt): CO2 619 -> 1365 -> 894 -> 1165 -> 622 ppm with nobody present,
    replayed at the sensor's 2 s. Its fall is faster than any ventilation: after it the CO2 is a local
    source, so the second rise is no evidence. Never ALARM; at most the first rise's PRE_ALARM."""
    path = excerpts / "uci_occupancy_2015-02-09_2130-2245.csv"
    result = bench.uci_occupancy(2.0, [path])[path.name]
    assert result["false_alarms"] == 0 and result["pre_alarms"] <= 1, result


def test_fsri_armchair_fire_alarms_by_204_s_at_heater_height(excerpts: Path) -> None:
    """The real FSRI armchair fire (excerpt: quadrant A, 1.8 m below the 2.4 m ceiling), replayed at 2 s."""
    r = bench.fsri(path=excerpts / "fsri_redaccent_closed_corner_1_quadA_1.8m.csv")
    assert r["ignition_to_alarm_s"] is not None and r["ignition_to_alarm_s"] <= 204.0, r


def test_two_days_of_everyday_life_without_false_alarm() -> None:
    """The fortnight program's first two days at the sensors' 2 s rate, every sensor path of the engine
    running (86 400 evaluations, a few seconds): no ALARM, and at most one PRE_ALARM a day (the evening's
    cooking smoke, once even while it holds the particle sensor at full scale). Its sound events only add
    microphone blocks, not readings, so they are left out here: each sound runs with its audio at 2 s above
    and benchmarks/fire.py plays all 14 days with the audio."""
    spec = player.load("fortnight")
    spec["duration_s"] = 2 * 86400
    spec["events"] = [e for e in spec["events"] if e["type"] != "sound"]
    r = bench.run_scenario(spec)
    assert r["false_alarms"] == 0, r
    assert r["pre_alarms"] <= 2, r
