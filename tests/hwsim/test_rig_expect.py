"""The rig's expectation checks, KPIs and report, on hand-made records."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from qrad_hwsim.rig_expect import Record, Sample, check, kpis, parse_expectation, render, report


def _record(air: list[float], power: list[float], gpio: list[int] | None = None, step_s: float = 10.0,
            events: dict[str, float] | None = None) -> Record:
    record = Record()
    for i, (a, p) in enumerate(zip(air, power, strict=True)):
        record.add(Sample(i * step_s, a, p, {} if gpio is None else {23: gpio[i]}))
    for name, t_s in (events or {}).items():
        record.event(name, t_s)
    return record


def _one(table: dict, record: Record):
    (outcome,) = check([parse_expectation(0, table)], record)
    return outcome


AIR = {"kind": "air_within", "from_s": 20, "to_s": 40, "setpoint_c": 20.0, "band_k": 0.5}


def test_air_within_reports_the_worst_sample_in_the_window() -> None:
    record = _record([15.0, 19.8, 20.3, 19.6, 20.1, 30.0], [0.0] * 6)  # outside the window: ignored
    outcome = _one(AIR, record)
    assert outcome.met and outcome.observed == pytest.approx(-0.4) and outcome.at_s == 30.0
    outcome = _one(AIR | {"band_k": 0.3}, record)
    assert not outcome.met and outcome.at_s == 30.0


def test_mean_power_is_time_weighted() -> None:
    record = _record([20.0] * 5, [100.0, 100.0, 500.0, 500.0, 500.0])
    table = {"kind": "mean_power_above", "from_s": 0, "to_s": 40, "min_w": 300.0}
    outcome = _one(table, record)
    assert outcome.met and outcome.observed == pytest.approx(350.0)
    assert not _one(table | {"min_w": 350.0}, record).met


FLOOR = {"kind": "power_floor_after", "after": "fire", "within_s": 20, "floor_w": 60.0}


def test_power_floor_within_the_bound_and_held() -> None:
    record = _record([20.0] * 6, [500.0, 500.0, 400.0, 55.0, 55.0, 55.0], events={"fire": 10.0})
    outcome = _one(FLOOR, record)
    assert outcome.met and outcome.observed == 20.0 and outcome.at_s == 30.0


def test_power_floor_too_late_never_or_left() -> None:
    late = _record([20.0] * 6, [500.0, 500.0, 400.0, 300.0, 55.0, 55.0], events={"fire": 10.0})
    assert not _one(FLOOR, late).met and _one(FLOOR, late).observed == 30.0
    left = _record([20.0] * 6, [500.0, 55.0, 55.0, 300.0, 55.0, 55.0], events={"fire": 10.0})
    assert not _one(FLOOR, left).met and "left the floor" in _one(FLOOR, left).detail
    assert _one(FLOOR | {"hold": False}, left).met
    never = _record([20.0] * 3, [55.0] * 3)
    outcome = _one(FLOOR, never)
    assert not outcome.met and "never happened" in outcome.detail


def test_gpio_output_rise_is_an_event_and_an_expectation() -> None:
    record = _record([20.0] * 6, [500.0] * 6, gpio=[0, 0, 0, 1, 1, 1], events={"fire": 10.0})
    assert record.events["gpio23"] == 30.0
    table = {"kind": "gpio_set_after", "line": 23, "after": "fire", "within_s": 30}
    outcome = _one(table, record)
    assert outcome.met and outcome.observed == 20.0
    assert not _one(table | {"within_s": 10}, record).met
    assert not _one(table, _record([20.0] * 2, [0.0] * 2, gpio=[0, 0], events={"fire": 0.0})).met


def test_kpis_and_report() -> None:
    record = _record([19.0, 19.0, 20.2, 21.0], [360.0] * 4, step_s=1200.0)
    values = kpis(record, setpoint_c=20.0, band_k=0.5)
    # |error| - band at the samples: 0.5, 0.5, 0, 0.5 K; trapezoids of 1/3 h: 0.5/3 + 0.25/3 + 0.25/3 K·h.
    assert values["discomfort_kh"] == pytest.approx(1 / 3, abs=1e-3)
    assert values["energy_kwh"] == pytest.approx(0.36) and values["mean_power_w"] == 360.0
    assert (values["min_air_c"], values["max_air_c"]) == (19.0, 21.0)
    early = kpis(record, setpoint_c=20.0, band_k=0.5, to_s=1200.0)  # the [kpi] window
    assert early["discomfort_kh"] == pytest.approx(0.5 / 3, abs=1e-3) and early["max_air_c"] == 19.0
    outcomes = check([parse_expectation(0, AIR | {"from_s": 0, "to_s": 3600, "band_k": 1.0})], record)
    data = report("t", datetime(2026, 1, 7, 6), record, outcomes, values, 60.0, "duration")
    assert json.loads(json.dumps(data)) == data
    assert data["all_met"] and data["expectations"][0]["name"] == "air_within #0"
    assert data["events"]["start"]["at"] == "2026-01-07T06:00:00"
    table = render(data)
    assert "1/1 expectations met" in table and "discomfort 0.33 K·h" in table
