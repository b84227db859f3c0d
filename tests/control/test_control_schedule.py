"""Tests of qrad_agent.control.schedule: modes over the week, wrap-around, next_change, parsing errors."""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_agent.control.schedule import (
    Mode,
    ModeSetpoints,
    ScheduleRule,
    WeeklySchedule,
    default_home,
)

MONDAY = datetime(2024, 1, 1)  # a Monday
PROPS = settings(max_examples=200, deadline=None)


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hh, minutes=mm, seconds=ss)


@pytest.mark.parametrize(
    ("when", "mode"),
    [
        (at(0, 0), Mode.ECO), (at(0, 6, 29, 59), Mode.ECO), (at(0, 6, 30), Mode.COMFORT),
        (at(0, 8, 29), Mode.COMFORT), (at(0, 8, 30), Mode.ECO), (at(2, 12), Mode.ECO),
        (at(3, 17), Mode.COMFORT), (at(4, 22, 29), Mode.COMFORT), (at(4, 22, 30), Mode.ECO),
        (at(5, 6, 30), Mode.ECO), (at(5, 8), Mode.COMFORT), (at(5, 22, 59), Mode.COMFORT),
        (at(5, 23), Mode.ECO), (at(6, 12), Mode.COMFORT), (at(6, 23, 30), Mode.ECO),
        (at(7, 3), Mode.ECO), (at(7, 7), Mode.COMFORT),  # the next Monday
    ],
)
def test_default_home_modes(when, mode):
    schedule = default_home()
    assert schedule.mode_at(when) is mode
    assert schedule.setpoint_at(when) == {Mode.COMFORT: 20.0, Mode.ECO: 17.0}[mode]


def test_rule_wraps_over_midnight_and_week_end():
    schedule = WeeklySchedule.parse(
        [{"days": "sun", "start": "22:00", "mode": "frost"}, {"days": "mon", "start": "06:00", "mode": "comfort"},
         {"days": "wed", "start": "23:00", "mode": "eco"}]
    )
    assert schedule.mode_at(at(6, 21, 59)) is Mode.ECO  # Wednesday's rule still holds on Sunday
    assert schedule.mode_at(at(6, 22)) is Mode.FROST
    assert schedule.mode_at(at(7, 0)) is Mode.FROST and schedule.mode_at(at(7, 5, 59, 59)) is Mode.FROST
    assert schedule.mode_at(at(7, 6)) is Mode.COMFORT
    assert schedule.mode_at(at(3, 3)) is Mode.ECO  # Wednesday 23:00 covers Thursday night
    assert schedule.next_change(at(6, 23)) == at(7, 6)
    assert schedule.next_change(at(1, 0)) == at(2, 23)


def test_next_change_skips_rules_that_keep_the_setpoint_and_keeps_tzinfo():
    setpoints = ModeSetpoints(comfort_c=19.0, eco_c=19.0, frost_c=7.0)
    schedule = WeeklySchedule.parse(
        [{"days": "daily", "start": "08:00", "mode": "comfort"}, {"days": "daily", "start": "20:00", "mode": "eco"},
         {"days": "sat", "start": "12:00", "mode": "frost"}],
        setpoints,
    )
    assert schedule.next_change(at(0, 7)) == at(5, 12)
    aware = at(0, 7).replace(tzinfo=timezone.utc)
    assert schedule.next_change(aware) == at(5, 12).replace(tzinfo=timezone.utc)


def test_constant_and_empty_schedules():
    constant = WeeklySchedule.constant(21.5)
    assert constant.setpoint_at(at(3, 4)) == 21.5 and constant.next_change(at(3, 4)) is None
    assert WeeklySchedule([], default_mode=Mode.FROST).setpoint_at(at(1, 1)) == 7.0
    single = WeeklySchedule.parse([{"days": "daily", "start": "00:00", "mode": "comfort"}])
    assert single.mode_at(at(4, 13)) is Mode.COMFORT and single.next_change(at(4, 13)) is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"days": "mon-fru", "start": "06:30", "mode": "comfort"}, "days"),
        ({"days": "", "start": "06:30", "mode": "comfort"}, "days"),
        ({"days": 3, "start": "06:30", "mode": "comfort"}, "days"),
        ({"days": "mon-wed-fri", "start": "06:30", "mode": "comfort"}, "days"),
        ({"days": "mon", "start": "25:00", "mode": "comfort"}, "start"),
        ({"days": "mon", "start": "6h30", "mode": "comfort"}, "start"),
        ({"days": "mon", "start": "06:30", "mode": "hot"}, "mode"),
        ({"days": "mon", "start": "06:30", "mode": "comfort", "temp": 21}, "temp"),
        ({"days": "mon", "mode": "comfort"}, "start"),
    ],
)
def test_parse_errors_name_the_field_and_value(raw, field):
    with pytest.raises(ValueError, match=f"rule 1: field '{field}'"):
        WeeklySchedule.parse([{"days": "daily", "start": "00:00", "mode": "eco"}, raw])


def test_parse_day_forms():
    parse_days = lambda days: WeeklySchedule.parse([{"days": days, "start": "06:00", "mode": "eco"}]).rules[0].days
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("Sat, SUN") == frozenset({5, 6})
    assert parse_days("daily") == frozenset(range(7))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("weekend,wed") == frozenset({2, 5, 6})


def test_validation_of_setpoints_rules_and_conflicts():
    with pytest.raises(ValueError, match="comfort_c >= eco_c"):
        ModeSetpoints(comfort_c=16.0)
    with pytest.raises(ValueError, match="eco_c"):
        ModeSetpoints(eco_c=math.nan)
    with pytest.raises(ValueError, match="days"):
        ScheduleRule(frozenset({7}), time(6), Mode.ECO)
    with pytest.raises(ValueError, match="conflicting"):
        WeeklySchedule.parse([{"days": "mon", "start": "06:00", "mode": "eco"},
                              {"days": "mon-fri", "start": "06:00", "mode": "comfort"}])


rules_st = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 23), st.sampled_from([0, 30]), st.sampled_from(list(Mode))),
    max_size=12,
    unique_by=lambda r: r[:3],
)
when_st = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


@PROPS
@given(rules_st, when_st)
def test_next_change_is_the_first_setpoint_change(rules, when):
    schedule = WeeklySchedule(
        [ScheduleRule(frozenset({day}), time(hh, mm), mode) for day, hh, mm, mode in rules]
    )
    current_c = schedule.setpoint_at(when)
    change = schedule.next_change(when)
    horizon = change if change is not None else when + timedelta(days=7)
    assert when < horizon <= when + timedelta(days=7)
    # rules start on half hours, so one probe per half-hour segment sees every segment before the change
    probe = when
    while probe < horizon:
        assert schedule.setpoint_at(probe) == current_c
        probe += timedelta(minutes=30)
    assert schedule.setpoint_at(horizon - timedelta(microseconds=1)) == current_c
    if change is not None:
        assert schedule.setpoint_at(change) != current_c
