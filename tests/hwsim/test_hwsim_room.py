"""Room: analytic steady state, exact discretisation, the two time scales of a 500 W step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_hwsim.room import Room, RoomParams, steady_state

PARAMS = RoomParams()


def run(room: Room, duration_s: float, dt_s: float, heater_w: float, outdoor_c: float) -> None:
    for _ in range(int(round(duration_s / dt_s))):
        room.step(dt_s, heater_w, outdoor_c)


def test_steady_state_is_the_analytic_solution() -> None:
    room = Room.at_equilibrium(PARAMS, 5.0, 5.0)
    run(room, 30 * 86400.0, 60.0, 500.0, 5.0)
    h_series = PARAMS.h_am_w_k * PARAMS.h_mo_w_k / (PARAMS.h_am_w_k + PARAMS.h_mo_w_k)
    expected_air_c = 5.0 + 500.0 / (PARAMS.h_ao_w_k + h_series)
    expected_mass_c = (PARAMS.h_am_w_k * expected_air_c + PARAMS.h_mo_w_k * 5.0) / (
        PARAMS.h_am_w_k + PARAMS.h_mo_w_k)
    assert room.air_c == pytest.approx(expected_air_c, abs=1e-3)
    assert room.mass_c == pytest.approx(expected_mass_c, abs=1e-3)
    assert steady_state(PARAMS, 500.0, 5.0) == pytest.approx((expected_air_c, expected_mass_c))
    assert 24.0 < expected_air_c - 5.0 < 26.0  # notes: creeps toward about +25 K


def test_500_w_step_fast_rise_then_slow_creep() -> None:
    room = Room.at_equilibrium(PARAMS, 0.0, 0.0)
    run(room, 900.0, 10.0, 500.0, 0.0)
    rise_15min_k = room.air_c
    run(room, 900.0, 10.0, 500.0, 0.0)
    rise_30min_k = room.air_c
    run(room, 47 * 3600.0, 60.0, 500.0, 0.0)
    rise_48h_k = room.air_c
    assert 0.5 < rise_15min_k < 3.0
    assert rise_30min_k - rise_15min_k < rise_15min_k
    assert 3.0 < rise_48h_k < 0.8 * steady_state(PARAMS, 500.0, 0.0)[0]


def test_time_constants_fast_minutes_slow_days() -> None:
    fast_s, slow_s = Room(PARAMS, 0.0, 0.0).time_constants_s
    assert 5 * 60 < fast_s < 40 * 60
    assert 30 * 3600 < slow_s < 80 * 3600


def test_large_steps_are_stable() -> None:
    room = Room(PARAMS, 20.0, 10.0)
    for _ in range(100):
        room.step(3600.0, 500.0, -5.0)
        assert -5.0 <= room.mass_c <= room.air_c <= steady_state(PARAMS, 500.0, -5.0)[0] + 1e-9


@settings(max_examples=50, deadline=None)
@given(dt1_s=st.floats(0.0, 3600.0), dt2_s=st.floats(0.0, 3600.0), heater_w=st.floats(0.0, 600.0),
       outdoor_c=st.floats(-10.0, 35.0))
def test_discretisation_is_exact(dt1_s: float, dt2_s: float, heater_w: float, outdoor_c: float) -> None:
    split, whole = Room(PARAMS, 18.0, 12.0), Room(PARAMS, 18.0, 12.0)
    split.step(dt1_s, heater_w, outdoor_c)
    split.step(dt2_s, heater_w, outdoor_c)
    whole.step(dt1_s + dt2_s, heater_w, outdoor_c)
    assert split.air_c == pytest.approx(whole.air_c, abs=1e-9)
    assert split.mass_c == pytest.approx(whole.mass_c, abs=1e-9)


def test_solar_and_internal_gains_heat_like_the_heater() -> None:
    heater, gains = Room(PARAMS, 15.0, 12.0), Room(PARAMS, 15.0, 12.0)
    heater.step(600.0, 300.0, 0.0)
    gains.step(600.0, 0.0, 0.0, solar_w=200.0, internal_w=100.0)
    assert (gains.air_c, gains.mass_c) == pytest.approx((heater.air_c, heater.mass_c))
    assert PARAMS.solar_gain_w(400.0) == pytest.approx(4.0 * 0.5 * 0.35 * 400.0)
    assert PARAMS.solar_gain_w(-5.0) == 0.0


def test_rejects_bad_params() -> None:
    with pytest.raises(ValueError):
        RoomParams(c_air_j_k=0.0)
