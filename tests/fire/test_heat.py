"""Heat detection: EN 54-5 A1R response-time windows, noise, and rises the heater's own power explains."""

from __future__ import annotations

import numpy as np
import pytest

from qrad_agent.fire.config import HeatConfig
from qrad_agent.fire.heat import HeatDetector
from qrad_hwsim.room import Room, RoomParams

# EN 54-5 class A1, from 25 °C: rate K/min -> (lower, upper) response time in s (see heat.py)
A1_TABLE = {1: (29 * 60, 40 * 60 + 20), 3: (7 * 60 + 13, 13 * 60 + 40), 5: (4 * 60 + 9, 8 * 60 + 20),
            10: (60, 4 * 60 + 20), 20: (30, 2 * 60 + 20), 30: (20, 60 + 40)}


@pytest.mark.parametrize("rate", sorted(A1_TABLE))
def test_en54_5_a1_response_windows(rate: int) -> None:
    det = HeatDetector(HeatConfig())
    rng = np.random.default_rng(rate)
    for k in range(2000 * 60 // 2):
        t = 2.0 * k
        ev = det.update(t, 25.0 + rate * t / 60 + rng.normal(0, 0.1), 0.0)
        if ev.confidence >= 1.0:
            break
    lower, upper = A1_TABLE[rate]
    assert lower <= t <= upper, (rate, t)


def test_noise_alone_gives_no_evidence() -> None:
    det = HeatDetector(HeatConfig())
    rng = np.random.default_rng(0)
    worst = max(det.update(2.0 * k, 21.0 + rng.normal(0, 0.5), 300.0).confidence for k in range(20000))
    assert worst == 0.0


def test_unexplained_fast_rise_is_graded_evidence_below_alarm() -> None:
    det = HeatDetector(HeatConfig())
    for k in range(200):
        ev = det.update(2.0 * k, 21.0 + 0.05 * max(0, k - 60), 300.0)  # 1.5 K/min after 2 min
    assert 0.0 < ev.confidence < 0.6 and "beyond what 300 W explains" in ev.reason


def test_room_model_learns_the_heaters_own_heating() -> None:
    """A small room and a strong heater switched every 30 min: after hours of switching, the model
    explains the heater's own rises and they give no heat evidence."""
    params = RoomParams(c_air_j_k=0.06e6, h_ao_w_k=8.0)
    room = Room.at_equilibrium(params, 18.0, 5.0)
    det = HeatDetector(HeatConfig())
    worst_late, explained_late = 0.0, 0.0
    for k in range(12 * 3600 // 10):
        power = 1500.0 if (k // 180) % 2 == 0 else 0.0
        room.step(10.0, power, 5.0)
        ev = det.update(10.0 * k, room.air_c, power)
        if k > 6 * 360:
            worst_late = max(worst_late, ev.confidence)
            explained_late = max(explained_late, ev.values["explained_k_per_min"])
    assert det.model.updates > 100
    assert explained_late > 0.0
    assert worst_late < 0.1


def test_missing_temperature_is_missing_evidence() -> None:
    ev = HeatDetector(HeatConfig()).update(0.0, None, 100.0)
    assert not ev.available and "temperature" in ev.reason


def test_rate_of_rise_element_answers_the_cold_layer_before_46_c() -> None:
    """A heater's sensor near the floor, at 14 °C, then a fire's heat arriving at 20 K/min: the rate-of-rise
    element answers after a 10 K rise (EN 54-5's 30 s lower limit at 20 K/min), far below 46 °C."""
    det = HeatDetector(HeatConfig())
    rng = np.random.default_rng(3)
    for k in range(300):
        det.update(2.0 * k, 14.0 + rng.normal(0, 0.1), 0.0)
    for k in range(120):
        t = 600.0 + 2.0 * k
        ev = det.update(t, 14.0 + 20.0 * (t - 600.0) / 60 + rng.normal(0, 0.1), 0.0)
        if ev.confidence >= 1.0:
            break
    assert ev.confidence >= 1.0 and "rate-of-rise response" in ev.reason, ev
    assert 30.0 <= t - 600.0 <= 45.0 and ev.values["temp_c"] < 30.0, (t, ev.values)


def test_a_slow_warm_up_never_reaches_the_rate_of_rise_element() -> None:
    """A 500 W heater's own plume on a cold sensor (3 K in a few minutes) and a room warming 5 K/h."""
    det = HeatDetector(HeatConfig())
    worst = 0.0
    for k in range(3600):
        t = 2.0 * k
        temp = 15.0 + 3.0 * (1 - np.exp(-t / 120.0)) + 5.0 * t / 3600
        worst = max(worst, det.update(t, temp, 500.0).confidence)
    assert worst < 1.0
