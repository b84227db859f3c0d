"""Unit and property tests of qrad_agent.control.pid: range, anti-windup, bumpless moves, persistence."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qrad_agent.control.pid import PidController, PidGains

PROPS = settings(max_examples=200, deadline=None)

gains_st = st.builds(
    PidGains,
    kp_w_per_k=st.floats(0.1, 2000.0),
    ti_s=st.one_of(st.just(math.inf), st.floats(1.0, 1e5)),
    td_s=st.one_of(st.just(0.0), st.floats(0.0, 600.0)),
    derivative_filter_n=st.floats(1.0, 50.0),
    setpoint_weight_b=st.floats(0.0, 1.0),
    tracking_time_s=st.one_of(st.none(), st.floats(0.5, 1e4)),
)
step_st = st.tuples(
    st.floats(5.0, 30.0),  # setpoint_c
    st.floats(-20.0, 60.0),  # pv_c
    st.floats(0.01, 3600.0),  # dt_s
    st.one_of(st.none(), st.floats(-100.0, 2000.0)),  # applied_w
    st.booleans(),  # integrate
)
range_st = st.tuples(st.floats(-100.0, 500.0), st.floats(1.0, 2000.0)).map(lambda r: (r[0], r[0] + r[1]))


def run(pid: PidController, steps: list[tuple[float, float, float, float | None, bool]]) -> list[float]:
    return [pid.update(sp, pv, dt, applied, integrate=integ) for sp, pv, dt, applied, integ in steps]


@PROPS
@given(gains_st, gains_st, range_st, st.lists(step_st, max_size=40), st.lists(step_st, max_size=20), st.booleans())
def test_output_and_integral_stay_within_range(g1, g2, out_range, steps1, steps2, bumpless):
    lo, hi = out_range
    pid = PidController(g1, lo, hi, bumpless_setpoint=bumpless)
    outputs = run(pid, steps1)
    pid.set_gains(g2)
    outputs += run(pid, steps2)
    assert all(lo <= out <= hi for out in outputs)
    assert lo <= pid.terms.i_w <= hi
    assert all(math.isfinite(v) for v in pid.state().values())


def test_gains_validation_names_the_field():
    for kwargs, field in [
        ({"kp_w_per_k": 0.0}, "kp_w_per_k"),
        ({"kp_w_per_k": 1.0, "ti_s": 0.0}, "ti_s"),
        ({"kp_w_per_k": 1.0, "ti_s": math.nan}, "ti_s"),
        ({"kp_w_per_k": 1.0, "td_s": -1.0}, "td_s"),
        ({"kp_w_per_k": 1.0, "derivative_filter_n": 0.0}, "derivative_filter_n"),
        ({"kp_w_per_k": 1.0, "setpoint_weight_b": 1.5}, "setpoint_weight_b"),
        ({"kp_w_per_k": 1.0, "tracking_time_s": -2.0}, "tracking_time_s"),
    ]:
        with pytest.raises(ValueError, match=field):
            PidGains(**kwargs)
    assert PidGains(10.0, 400.0, 100.0).effective_tracking_time_s == pytest.approx(200.0)
    assert PidGains(10.0, 400.0).effective_tracking_time_s == 200.0


def test_bad_inputs_raise():
    pid = PidController(PidGains(100.0, 600.0), 0.0, 500.0)
    for args in [(20.0, 19.0, 0.0), (20.0, 19.0, -1.0), (math.nan, 19.0, 1.0), (20.0, math.nan, 1.0),
                 (20.0, 19.0, math.inf)]:
        with pytest.raises(ValueError):
            pid.update(*args)
    with pytest.raises(ValueError, match="applied_w"):
        pid.update(20.0, 19.0, 1.0, applied_w=math.nan)
    with pytest.raises(ValueError):
        PidController(PidGains(1.0), 10.0, 10.0)


def windup_scenario(controller) -> float:
    """10 h at full power with pv 5 K below setpoint, then pv ramps up 1 K/h through it.
    Returns the time (s) from the crossing until the output leaves saturation."""
    dt, sp = 10.0, 20.0
    for _ in range(int(10 * 3600 / dt)):
        assert controller.update(sp, sp - 5.0, dt) == 500.0
    pv, t_since_cross = sp - 5.0, None
    for _ in range(int(10 * 3600 / dt)):
        pv += dt / 3600.0
        out = controller.update(sp, pv, dt)
        t_since_cross = None if pv < sp else (t_since_cross or 0.0) + dt
        if t_since_cross is not None and out < 500.0:
            return t_since_cross
    return math.inf


def test_no_windup_after_long_saturation_and_naive_pi_does_wind_up(naive_pi):
    gains = PidGains(100.0, 900.0)
    pid = PidController(gains, 0.0, 500.0)
    leave_s = windup_scenario(pid)
    assert leave_s <= 60.0
    assert 0.0 <= pid.terms.i_w <= 500.0
    naive = naive_pi(100.0, 900.0, 0.0, 500.0)
    naive_leave_s = windup_scenario(naive)
    assert naive_leave_s > 3600.0  # the scenario is able to detect windup
    assert naive.integral_w > 10 * 500.0


def test_applied_override_is_tracked_and_released_without_bump(naive_pi):
    gains = PidGains(100.0, 600.0)
    pid = PidController(gains, 0.0, 500.0)
    for _ in range(3600):  # 10 h forced to 0 W with the room 0.2 K below setpoint
        pid.update(20.0, 19.8, 10.0, applied_w=0.0)
    released = pid.update(20.0, 19.8, 10.0)
    assert released <= 100.0 * 0.2 + 100.0 / 600.0 * 0.2 * 10.0 + 1e-6  # P plus one step of I
    naive = naive_pi(100.0, 600.0, 0.0, 500.0)
    assert [naive.update(20.0, 19.8, 10.0) for _ in range(3600)][-1] == 500.0
    capped = PidController(gains, 0.0, 500.0)
    for _ in range(3600):  # power manager caps at 250 W while the PID asks for more
        capped.update(20.0, 19.5, 10.0, applied_w=250.0)
    # back-calculation settles where Ki*e ~ (v - applied)/Tt, i.e. v - applied ~ Kp*e*Tt/Ti = 25 W here
    # (discretely Ki*e*dt / (1 - exp(-dt/Tt))), plus one more step of integration on release
    step_w = 100.0 / 600.0 * 0.5 * 10.0
    offset_w = step_w / -math.expm1(-10.0 / gains.effective_tracking_time_s) + step_w
    assert 250.0 <= capped.update(20.0, 19.5, 10.0) <= 250.0 + offset_w + 1e-6


@PROPS
@given(gains_st, gains_st, st.lists(step_st, min_size=1, max_size=30))
def test_set_gains_keeps_the_output_at_the_current_point(g1, g2, steps):
    pid = PidController(g1, 0.0, 1000.0)
    run(pid, steps)
    before = pid.terms.output_w
    pid.set_gains(g2)
    if 0.0 < pid.terms.i_w < 1000.0:  # the integral bound did not bite
        assert pid.terms.output_w == pytest.approx(before, abs=1e-6 * (1 + abs(before)))


def test_set_gains_then_update_is_smooth():
    pid = PidController(PidGains(100.0, 900.0, 60.0), 0.0, 500.0)
    for _ in range(200):
        before = pid.update(20.0, 19.5, 10.0)
    pid.set_gains(PidGains(300.0, 300.0, 0.0))
    after = pid.update(20.0, 19.5, 10.0)
    assert abs(after - before) <= 300.0 / 300.0 * 0.5 * 10.0 + 1e-6


@PROPS
@given(gains_st, st.lists(step_st, max_size=20), st.floats(-15.0, 15.0), st.floats(0.01, 60.0))
def test_setpoint_change_moves_the_output_by_b_and_one_interval_of_integral(gains, steps, delta_k, dt_s):
    """Set-point weighting: against an unchanged setpoint, a change of Δr moves the output by at most
    Kp·(b + dt/Ti)·|Δr| (P's weighted share at once, the integral's over the interval), whatever the state;
    nothing of the change reaches the integral's clamp."""
    assume(steps)  # a change needs a setpoint before it
    pid = PidController(gains, 0.0, 1000.0)
    pid.reset(output_w=500.0)
    run(pid, steps)
    sp, pv = steps[-1][0], steps[-1][1]
    same, moved = copy.deepcopy(pid), copy.deepcopy(pid)
    out_same = same.update(sp, pv, dt_s)
    out_moved = moved.update(sp + delta_k, pv, dt_s)
    bound_w = gains.kp_w_per_k * (gains.setpoint_weight_b + dt_s / gains.ti_s) * abs(delta_k)
    assert abs(out_moved - out_same) <= bound_w * (1 + 1e-9) + 1e-6


def _default_pid() -> PidController:
    """The thermostat's default PID (config.PidConfig: 1400 W/K, 1100 s, b = 0) on 0..500 W."""
    return PidController(PidGains(1400.0, 1100.0, setpoint_weight_b=0.0), 0.0, 500.0)


def _at_steady_state(pid: PidController, output_w: float, room_c: float = 20.0) -> float:
    pid.reset(output_w=output_w)
    for _ in range(10):
        before = pid.update(room_c, room_c, 30.0)
    return before


@pytest.mark.parametrize("delta_k", [0.1, 0.3, 2.0])
def test_setpoint_steps_at_steady_state_are_bumpless_and_never_reach_the_clamp(delta_k):
    """The issue's case: the default gains at 149 W, setpoint +0.3 K (the old design jumped to 500 W through
    the integral clamp) and +2 K: the first 30 s period moves the output by Kp/Ti·Δr·30 s (11 W for 0.3 K,
    76 W for 2 K), not to a limit, and the integral stays inside the range."""
    pid = _default_pid()
    before = _at_steady_state(pid, 149.0)
    assert before == pytest.approx(149.0)
    after = pid.update(20.0 + delta_k, 20.0, 30.0)
    assert after - before == pytest.approx(1400.0 / 1100.0 * delta_k * 30.0)
    assert 0.0 < after < 500.0 and 0.0 < pid.terms.i_w < 500.0


def test_a_large_override_gets_full_power_within_two_periods():
    """+5 K above the old setpoint (the issue: ~30 min before any power under the old reference filter): the
    integral moves 1.3 W/s per K, so the output reaches 500 W at the second 30 s period; a room 2 K above
    the old setpoint (heater at the floor) and 3 K below the new one gets it at the fifth (2.5 min; the old
    filter had to bring the reference across those 2 K first)."""
    pid = _default_pid()
    _at_steady_state(pid, 149.0)
    outputs = [pid.update(25.0, 20.0, 30.0) for _ in range(3)]
    assert outputs[0] > 149.0 + 150.0 and outputs[1] == 500.0, outputs
    warm = _default_pid()
    _at_steady_state(warm, 0.0, room_c=22.0)  # above the setpoint of 20 °C: at the floor
    for _ in range(10):
        warm.update(20.0, 22.0, 30.0)
    assert warm.output_w == 0.0
    outputs = [warm.update(25.0, 22.0, 30.0) for _ in range(5)]
    assert outputs[4] == 500.0 and outputs[0] > 100.0, outputs


def test_a_large_setback_brings_the_output_down_without_winding_below_the_floor():
    pid = _default_pid()
    _at_steady_state(pid, 149.0)
    outputs = [pid.update(7.0, 20.0, 30.0) for _ in range(5)]
    assert outputs[0] == 0.0 and pid.terms.i_w == 0.0  # 13 K above the setpoint: the floor at once
    back = [pid.update(20.0, 20.0, 30.0) for _ in range(3)]
    assert back == [0.0, 0.0, 0.0]  # no windup below the floor to unwind, no jump back up either


def test_setpoint_step_has_no_derivative_kick_and_steps_p_only_without_bumpless():
    gains = PidGains(100.0, 900.0, 300.0, setpoint_weight_b=0.5)
    pid = PidController(gains, -1e6, 1e6, bumpless_setpoint=False)
    for _ in range(100):
        pid.update(20.0, 19.0, 5.0)
    before = pid.terms
    after = pid.update(22.0, 19.0, 5.0)
    assert before.d_w == pytest.approx(0.0, abs=1e-9) and pid.terms.d_w == pytest.approx(0.0, abs=1e-9)
    assert after - before.output_w == pytest.approx(100.0 * 0.5 * 2.0 + 100.0 / 900.0 * 3.0 * 5.0)


def test_derivative_acts_on_measurement_through_the_filter():
    pid = PidController(PidGains(100.0, math.inf, 80.0, derivative_filter_n=8.0), -1e6, 1e6)
    pid.update(20.0, 20.0, 10.0)
    pid.update(20.0, 21.0, 10.0)  # pv +1 K: Tf = 10 s, backward difference -> dpv = 1 / (10 + 10)
    assert pid.terms.d_w == pytest.approx(-100.0 * 80.0 * 0.05)
    pid.update(20.0, 21.0, 10.0)
    assert pid.terms.d_w == pytest.approx(-100.0 * 80.0 * 0.025)


@PROPS
@given(st.floats(0.0, 500.0), st.floats(10.0, 25.0), st.floats(10.0, 25.0), gains_st)
def test_reset_starts_at_the_given_output(output_w, sp, pv, gains):
    pid = PidController(gains, 0.0, 500.0)
    run(pid, [(21.0, 18.0, 60.0, None, True)] * 5)
    pid.reset(output_w=output_w, pv_c=pv)
    out = pid.update(sp, pv, 10.0)
    if 0.0 <= output_w - pid.terms.p_w <= 500.0:
        assert out == pytest.approx(output_w, abs=1e-9 * (1 + abs(pid.terms.p_w)))


def test_integrate_false_freezes_the_integral():
    pid = PidController(PidGains(100.0, 600.0), 0.0, 500.0)
    pid.reset(output_w=200.0)
    pid.update(20.0, 20.0, 10.0)
    frozen = pid.terms.i_w
    for _ in range(100):
        out = pid.update(20.0, 19.0, 10.0, applied_w=0.0, integrate=False)
    assert pid.terms.i_w == frozen and out == pytest.approx(frozen + 100.0)


def test_state_round_trip_and_refusals():
    pid = PidController(PidGains(100.0, 600.0), 0.0, 500.0)
    for _ in range(50):
        pid.update(20.0, 19.0, 10.0)
    state = pid.state()
    assert set(state) == {"integral_w", "setpoint_c", "output_w"}
    assert all(type(v) is float for v in state.values())
    twin = PidController(PidGains(100.0, 600.0), 0.0, 500.0)
    twin.restore(state)
    assert twin.output_w == pid.output_w
    assert twin.update(20.0, 19.1, 10.0) == pytest.approx(pid.update(20.0, 19.1, 10.0))
    for bad in [{**state, "integral_w": math.nan}, {**state, "output_w": math.inf}, {"setpoint_c": 20.0},
                {**state, "extra": 1.0}, {**state, "integral_w": "12"}]:
        with pytest.raises(ValueError):
            twin.restore(bad)
