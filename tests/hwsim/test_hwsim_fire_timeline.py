"""hw-sim fire player's Timeline: the spans in force, found without scanning them all."""

from __future__ import annotations

import numpy as np

from qrad_hwsim.fire import player
from qrad_hwsim.fire.timeline import Timeline


def test_live_spans_are_those_a_full_scan_finds() -> None:
    rng = np.random.default_rng(3)
    starts = rng.uniform(0, 1000, 200)
    spans = [(float(s), None if k % 17 == 0 else float(s + rng.uniform(0, 80))) for k, s in enumerate(starts)]
    timeline = Timeline(spans)
    for t in np.arange(-5.0, 1100.0, 2.5):
        lo, hi = float(t), float(t) + 2.5
        want = [k for k, (s, e) in enumerate(spans) if s <= hi and (e is None or e > lo)]
        assert timeline.live(lo, hi) == want, t


def test_going_back_in_time_starts_over() -> None:
    timeline = Timeline([(0.0, 10.0), (20.0, 30.0)])
    assert timeline.live(25.0, 25.0) == [1]
    assert timeline.live(5.0, 5.0) == [0]


def test_a_program_plays_the_same_with_any_event_order() -> None:
    """The fortnight's events reversed: the same readings (the timeline keeps list order for the sums)."""
    spec = player.load("fortnight")
    spec = {**spec, "duration_s": 86400.0, "step_s": 10.0,
            "events": [e for e in spec["events"] if e["type"] != "sound"]}
    reversed_spec = {**spec, "events": spec["events"][::-1]}
    a = [(t.temp_c, t.co2_ppm, t.pm_ug_m3) for t in player.Player(spec, 1).ticks()]
    b = [(t.temp_c, t.co2_ppm, t.pm_ug_m3) for t in player.Player(reversed_spec, 1).ticks()]
    assert np.allclose(np.array(a, dtype=float), np.array(b, dtype=float), atol=0.011)
