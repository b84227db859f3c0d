"""The sliding-window slope and its standard error (qrad_agent.fire.trend)."""

from __future__ import annotations

import math

import pytest

from qrad_agent.fire.trend import WindowSlope


@pytest.mark.parametrize("value", [1000.0, 0.1, 419.0, 22.4375])
def test_identical_readings_are_no_slope_either_way(value: float) -> None:
    """A window of identical readings, at any time origin and after any rebase: the slope's bounds at
    four standard errors hold zero, and the error is the quantisation floor, not 0."""
    for t0 in (0.0, 69017.0, 1.2e6 + 0.3):
        w = WindowSlope(120.0, resolution=1.0)
        for k in range(2000):
            w.add(t0 + 2.0 * k, value if k > 100 else value - 50.0 + 0.5 * k)
            if k > 170:
                slope, se = w.slope()
                assert se > 0.0 and slope - 4 * se <= 0.0 <= slope + 4 * se, (t0, k, slope, se)


def test_quantisation_floor_matches_rounding_noise() -> None:
    """61 readings over 120 s: se = sqrt(q^2 / 12 / sum((t - mean t)^2))."""
    w = WindowSlope(120.0, resolution=1.0)
    for k in range(61):
        w.add(2.0 * k, 5.0)
    vtt = sum((2.0 * k - 60.0) ** 2 for k in range(61))
    assert w.slope()[1] == pytest.approx(math.sqrt(1 / 12 / vtt))


def test_noisy_readings_keep_their_own_error() -> None:
    """Noise far above the resolution: the floor changes nothing."""
    a, b = WindowSlope(120.0), WindowSlope(120.0, resolution=1.0)
    for k in range(61):
        x = 3.0 * k + (10.0 if k % 2 else -10.0)
        a.add(2.0 * k, x)
        b.add(2.0 * k, x)
    assert a.slope() == b.slope()
