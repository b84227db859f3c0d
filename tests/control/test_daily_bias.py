"""The forecast's daily residual profile (qrad_agent/model/bias.py)."""

from __future__ import annotations

import pytest

from qrad_agent.model.bias import DailyBias

SLOT_S = 900.0


def test_a_daily_residual_is_learned_for_its_hours_only() -> None:
    bias = DailyBias(bins=24, weight=0.25)
    for day in range(5):  # the model misses 120 W every evening from 18:00 to 19:00 (cooking, say)
        first_s = day * 86400.0
        bias.issued(first_s, SLOT_S, [200.0] * 96, 96)
        for k in range(96):
            t_s = first_s + k * SLOT_S
            bias.actual(t_s, 320.0 if 18 <= (t_s % 86400.0) / 3600.0 < 19 else 200.0)
    assert bias.at(18.5 * 3600.0) == pytest.approx(120.0, rel=0.05)
    assert bias.at(12 * 3600.0) == pytest.approx(0.0, abs=1e-9)


def test_only_issued_slots_teach_and_each_once() -> None:
    bias = DailyBias()
    bias.actual(0.0, 500.0)  # no forecast was issued for it
    assert bias.at(0.0) == 0.0
    bias.issued(0.0, SLOT_S, [100.0, 100.0], 1)  # only the first slot waits for its outcome
    bias.actual(SLOT_S, 500.0)
    assert bias.at(SLOT_S) == 0.0
    bias.actual(0.0, 150.0)
    bias.actual(0.0, 900.0)  # already counted
    assert bias.at(0.0) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        DailyBias(weight=0.0)
