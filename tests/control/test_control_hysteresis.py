"""Tests of qrad_agent.control.hysteresis: switching points, state memory, validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_agent.control.hysteresis import HysteresisThermostat


def test_switching_points_and_memory():
    thermostat = HysteresisThermostat(on_w=500.0, differential_k=0.5)
    assert not thermostat.is_on
    assert thermostat.update(20.0, 19.8) == 0.0  # inside the band: keeps off
    assert thermostat.update(20.0, 19.75) == 0.0  # exactly on the threshold: not below it
    assert thermostat.update(20.0, 19.74) == 500.0 and thermostat.is_on
    assert thermostat.update(20.0, 20.2) == 500.0  # inside the band: keeps on
    assert thermostat.update(20.0, 20.25) == 500.0
    assert thermostat.update(20.0, 20.26) == 0.0 and not thermostat.is_on
    assert thermostat.update(20.0, 19.9) == 0.0


def test_off_power_and_initial_state_and_reset():
    thermostat = HysteresisThermostat(on_w=400.0, off_w=60.0, initially_on=True)
    assert thermostat.update(20.0, 20.0) == 400.0
    thermostat.reset()
    assert thermostat.output_w == 60.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"on_w": 500.0, "differential_k": 0.0}, "differential_k"), ({"on_w": math.nan}, "on_w"),
     ({"on_w": 10.0, "off_w": 20.0}, "on_w"), ({"on_w": 10.0, "off_w": math.inf}, "off_w")],
)
def test_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        HysteresisThermostat(**kwargs)


def test_non_finite_input_raises():
    with pytest.raises(ValueError):
        HysteresisThermostat(on_w=500.0).update(20.0, math.nan)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.1, 2.0), st.floats(5.0, 25.0), st.lists(st.floats(0.0, 35.0), max_size=50))
def test_state_changes_only_outside_the_band(differential_k, setpoint_c, pvs):
    thermostat = HysteresisThermostat(on_w=500.0, differential_k=differential_k)
    for pv in pvs:
        was_on = thermostat.is_on
        out = thermostat.update(setpoint_c, pv)
        if pv < setpoint_c - differential_k / 2:
            assert thermostat.is_on
        elif pv > setpoint_c + differential_k / 2:
            assert not thermostat.is_on
        else:
            assert thermostat.is_on == was_on
        assert out == (500.0 if thermostat.is_on else 0.0)
