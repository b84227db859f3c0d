"""Closed-loop checks of the PID on a first-order-plus-dead-time room, and agreement with simple-pid.

Plant (Skogestad's FOPDT): k = 0.05 K/W, τ1 = 1800 s, θ = 60 s, discretised exactly under a zero-order hold.
SIMC PI (Skogestad 2003): Kc = τ1 / (k (τc + θ)), τI = min(τ1, 4 (τc + θ)). Measured with dt = 5 s and a
2 K step: τc = θ overshoots 0.34 K (17 %), τc = 2θ overshoots 0.20 K, τc = 2θ with b = 0.5 does not overshoot
(classical steps); with b = 0 (the thermostat's default set-point weight) neither overshoots.

simple-pid 2.0.1 mapping (its parallel form u = Kp e + Ki ∫e dt - Kd dy/dt, D on measurement by default,
integral by backward Euler with the current error, clamped to the output limits): Kp = kp_w_per_k,
Ki = Kp / Ti, Kd = Kp · Td; our derivative filter disappears as N -> inf and our P equals its P when b = 1.
"""

from __future__ import annotations

import math
from collections import deque

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from simple_pid import PID

from qrad_agent.control.pid import PidController, PidGains

PLANT_GAIN_K_PER_W, PLANT_TAU_S, DEAD_TIME_S = 0.05, 1800.0, 60.0
DT_S = 5.0


def simc_gains(tau_c_s: float, setpoint_weight_b: float = 1.0) -> PidGains:
    kc = PLANT_TAU_S / (PLANT_GAIN_K_PER_W * (tau_c_s + DEAD_TIME_S))
    return PidGains(kc, min(PLANT_TAU_S, 4 * (tau_c_s + DEAD_TIME_S)), setpoint_weight_b=setpoint_weight_b)


def step_response(pid: PidController, step_k: float = 2.0, hours: float = 6.0) -> tuple[list[float], list[float]]:
    """Settle at 0 for 1 h, step the setpoint by step_k; returns (pv, output) after the step."""
    decay = math.exp(-DT_S / PLANT_TAU_S)
    pipe = deque([0.0] * int(DEAD_TIME_S / DT_S))
    pv, pvs, outs = 0.0, [], []
    for k in range(int((1.0 + hours) * 3600 / DT_S)):
        setpoint = step_k if k >= 3600 / DT_S else 0.0
        out = pid.update(setpoint, pv, DT_S)
        pipe.append(out)
        pv = decay * pv + (1 - decay) * PLANT_GAIN_K_PER_W * pipe.popleft()
        if setpoint:
            pvs.append(pv)
            outs.append(out)
    return pvs, outs


def settling_time_s(pvs: list[float], target: float, band: float) -> float:
    last_outside = max((i for i, v in enumerate(pvs) if abs(v - target) > band), default=-1)
    return (last_outside + 1) * DT_S


@pytest.mark.parametrize(("tau_c_s", "b", "max_overshoot_k"), [(120.0, 1.0, 0.3), (120.0, 0.5, 0.01)])
def test_simc_step_settles_without_excess_overshoot(tau_c_s, b, max_overshoot_k):
    pid = PidController(simc_gains(tau_c_s, b), 0.0, 500.0, bumpless_setpoint=False)
    pvs, outs = step_response(pid)
    assert max(pvs) - 2.0 <= max_overshoot_k
    assert abs(pvs[-1] - 2.0) < 1e-3
    assert settling_time_s(pvs, 2.0, 0.1) < 1800.0
    assert max(outs) <= 500.0


def test_tight_simc_overshoots_more_than_the_bound():
    """τc = θ is the 'tight' SIMC choice: documents why the test above uses τc = 2θ."""
    pvs, _ = step_response(PidController(simc_gains(DEAD_TIME_S), 0.0, 500.0, bumpless_setpoint=False))
    assert 0.3 < max(pvs) - 2.0 < 0.4


@pytest.mark.parametrize("tau_c_s", [DEAD_TIME_S, 2 * DEAD_TIME_S])
def test_bumpless_2k_setpoint_step_neither_jumps_nor_winds_up_nor_overshoots(tau_c_s):
    """Set-point weight b = 0 on a 2 K step: the output moves by the integral's Kp/Ti·e·dt per step (the
    classical b = 1 step jumps to 400-500 W at once, then overshoots 0.20-0.34 K: the test above), never
    saturates, and the room does not overshoot (the response of b = 1 behind the filter 1/(Ti·s + 1))."""
    pid = PidController(simc_gains(tau_c_s, 0.0), 0.0, 500.0)
    pvs, outs = step_response(pid)
    steps_w = [abs(b - a) for a, b in zip([0.0] + outs, outs)]
    assert max(steps_w) <= pid.gains.kp_w_per_k / pid.gains.ti_s * 2.0 * DT_S + 1e-9  # the integral's share
    assert max(outs) < 500.0 and 0.0 <= pid.terms.i_w < 500.0
    assert max(pvs) - 2.0 <= 0.01
    assert abs(pvs[-1] - 2.0) < 1e-3 and settling_time_s(pvs, 2.0, 0.1) < 2400.0


def recovery(controller) -> tuple[float, float]:
    """10 h of a heat loss the heater cannot cover (pv stuck 30 K below a 20 °C setpoint at 500 W), then the
    loss stops. Returns (largest pv above the setpoint afterwards (K), final pv (°C))."""
    decay = math.exp(-DT_S / PLANT_TAU_S)
    pipe = deque([0.0] * int(DEAD_TIME_S / DT_S))
    pv, peak = 0.0, -math.inf
    for k in range(int(16 * 3600 / DT_S)):
        loss_w = 700.0 if k < 10 * 3600 / DT_S else 0.0
        out = controller.update(20.0, pv, DT_S)
        pipe.append(out)
        pv = decay * pv + (1 - decay) * PLANT_GAIN_K_PER_W * (pipe.popleft() - loss_w)
        if not loss_w:
            peak = max(peak, pv)
    return peak - 20.0, pv


def test_closed_loop_recovers_from_a_long_unreachable_setpoint_without_overshoot(naive_pi):
    gains = simc_gains(120.0)
    pid = PidController(gains, 0.0, 500.0)
    overshoot_k, final_c = recovery(pid)
    assert overshoot_k <= 0.3 and abs(final_c - 20.0) < 0.05
    assert 0.0 <= pid.terms.i_w <= 500.0
    naive_overshoot_k, _ = recovery(naive_pi(gains.kp_w_per_k, gains.ti_s, 0.0, 500.0))
    assert naive_overshoot_k > 3.0  # measured: 5 K, still saturated 6 h later


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1.0, 500.0),
    st.floats(60.0, 5000.0),
    st.lists(st.tuples(st.floats(15.0, 25.0), st.floats(15.0, 25.0), st.floats(0.1, 120.0)), max_size=60),
)
def test_pi_matches_simple_pid_when_unsaturated(kp, ti, steps):
    ours = PidController(PidGains(kp, ti), -1e9, 1e9, bumpless_setpoint=False)
    ref = PID(kp, kp / ti, 0.0, sample_time=None, output_limits=(-1e9, 1e9))
    for sp, pv, dt in steps:
        ref.setpoint = sp
        assert ours.update(sp, pv, dt) == pytest.approx(ref(pv, dt=dt), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1.0, 500.0),
    st.floats(60.0, 5000.0),
    st.floats(1.0, 600.0),
    st.lists(st.tuples(st.floats(15.0, 25.0), st.floats(1.0, 120.0)), max_size=60),
)
@example(73.0, 60.0, 524.0, [(15.0, 1.0), (20.0, 1.0), (20.0, 1.0)])
def test_pid_with_unfiltered_derivative_matches_simple_pid(kp, ti, td, steps):
    """With N huge the filter time Td/N vanishes and D = -Kp·Td·Δy/dt, simple-pid's derivative on measurement.
    What the filter keeps of the last D is D·Td/(Td + N·dt): with N = 1e12 that was up to 1e-3 W (the example:
    1.0e-4 W after a 5 K step, just over the tolerance); with N = 1e15 at most about 2e-6 W."""
    gains = PidGains(kp, ti, td, derivative_filter_n=1e15)
    ours = PidController(gains, -1e9, 1e9, bumpless_setpoint=False)
    ref = PID(kp, kp / ti, kp * td, setpoint=20.0, sample_time=None, output_limits=(-1e9, 1e9))
    for pv, dt in steps:
        assert ours.update(20.0, pv, dt) == pytest.approx(ref(pv, dt=dt), rel=1e-6, abs=1e-4)
