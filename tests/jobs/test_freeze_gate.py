"""Freeze/thaw of the real jobs' cgroup through the power manager, with a demand wandering around the
freeze threshold (the issue's fault: 50 ± 28 W for 120 periods gave 28 freezes and 27 thaws)."""

from __future__ import annotations

import itertools
import random

from qrad_agent.config import PowerConfig
from qrad_agent.jobs.freeze_gate import MIN_DWELL_S, MIN_THAWED_S, FreezeGate
from qrad_agent.jobs.heat import JobsHeat
from qrad_agent.power.manager import PowerManager

PERIOD_S = 30.0
PERIODS = 120


def _wander(harness, gate: FreezeGate) -> tuple[int, int, list[bool]]:
    """Drive the demand 50 ± 28 W (uniform, seeded) for 120 periods of 30 s through the power manager onto
    the real cgroup; returns (freezes, thaws) as read back from the kernel's freezer state, and that state
    at every period."""
    t_s = [0.0]
    heat = JobsHeat(harness.runner, now_s=lambda: t_s[0], gate=gate)
    power = PowerManager(PowerConfig(interfaces=["cgroup"]), actuators=[heat])
    rng = random.Random(12)
    states: list[bool] = []
    for k in range(PERIODS):
        t_s[0] = k * PERIOD_S
        power.set_demand(50.0 + rng.uniform(-28.0, 28.0), t_s[0])
        states.append(harness.runner.tree.frozen())
    freezes = sum(1 for a, b in zip([False] + states, states) if b and not a)
    thaws = sum(1 for a, b in itertools.pairwise(states) if a and not b)
    return freezes, thaws, states


def _runs(states: list[bool], value: bool) -> list[int]:
    """Lengths (periods) of the runs of ``value`` in ``states``, the first and the last left out (cut)."""
    runs = [len(list(group)) for key, group in itertools.groupby(states) if key == value]
    starts_with, ends_with = states[0] == value, states[-1] == value
    return runs[int(starts_with):len(runs) - int(ends_with)]


async def test_a_demand_wandering_around_the_freeze_threshold_does_not_flap(harness) -> None:
    single = FreezeGate(thaw_above_share=FreezeGate().freeze_below_share, min_dwell_s=0.0, min_thawed_s=0.0)
    flap_freezes, flap_thaws, _ = _wander(harness, single)  # one threshold, no dwell: the old behaviour
    harness.runner.thaw()
    freezes, thaws, states = _wander(harness, FreezeGate())
    print(f"one threshold: {flap_freezes} freezes, {flap_thaws} thaws; gate: {freezes} freezes, {thaws} thaws; "
          f"frozen runs {_runs(states, True)}, thawed runs {_runs(states, False)} (periods of {PERIOD_S:g} s)")
    assert flap_freezes >= 20  # the fault is reproduced by the input
    cycle_s = MIN_DWELL_S + MIN_THAWED_S
    assert 1 <= freezes <= 1 + PERIODS * PERIOD_S / cycle_s  # each cycle lasts at least both dwells
    assert all(r * PERIOD_S >= MIN_DWELL_S for r in _runs(states, True))
    assert all(r * PERIOD_S >= MIN_THAWED_S for r in _runs(states, False))


async def test_the_safety_minimum_freezes_at_once_even_right_after_a_thaw(harness) -> None:
    """The power manager's force_minimum (every safety condition, a refused demand, stop) never waits for
    a dwell, whereas a demand at the floor right after a thaw waits for MIN_THAWED_S at the lowest quota."""
    t_s = [0.0]
    heat = JobsHeat(harness.runner, now_s=lambda: t_s[0])
    power = PowerManager(PowerConfig(interfaces=["cgroup"]), actuators=[heat])
    power.set_demand(0.0, t_s[0])
    assert harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S
    power.set_demand(500.0, t_s[0])
    assert not harness.runner.tree.frozen()
    t_s[0] += 30.0
    power.set_demand(0.0, t_s[0])  # a demand at the floor 30 s after the thaw: thawed, at the lowest quota
    assert not harness.runner.tree.frozen() and heat.share == 0.0
    t_s[0] += 1.0
    power.force_minimum("cpu_overtemperature")
    assert harness.runner.tree.frozen() and harness.runner.frozen


async def test_a_low_share_freezes_once_the_jobs_ran_the_minimum_time(harness) -> None:
    t_s = [0.0]
    heat = JobsHeat(harness.runner, now_s=lambda: t_s[0])
    heat.set_share(0.5)  # the gate's first decision: no dwell to serve
    heat.set_share(0.0)
    assert harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S
    heat.set_share(0.5)
    assert not harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S + MIN_THAWED_S / 2
    heat.set_share(0.005)  # inside the thawed dwell: runs on at that share's quota
    assert not harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S + MIN_THAWED_S
    heat.set_share(0.005)
    assert harness.runner.tree.frozen() and harness.runner.frozen


async def test_a_thaw_waits_for_the_dwell_and_a_share_above_the_band(harness) -> None:
    t_s = [0.0]
    heat = JobsHeat(harness.runner, now_s=lambda: t_s[0])
    heat.set_share(0.0)
    assert harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S / 2
    heat.set_share(0.8)  # inside the dwell: stays frozen
    assert harness.runner.tree.frozen()
    t_s[0] = MIN_DWELL_S
    heat.set_share(0.03)  # dwell served, but inside the band (freeze 1 %, thaw 5 %): stays frozen
    assert harness.runner.tree.frozen()
    heat.set_share(0.05)
    assert not harness.runner.tree.frozen() and not harness.runner.frozen
