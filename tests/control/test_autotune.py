"""Autotune: step test against hw-sim rooms in virtual time, FOPDT fit, SIMC gains, closed-loop check.

Each room is hw-sim's 2R2C room + SHT4x-class sensor (lag ``tau_s``, 0.02 °C noise, +0.05 °C bias), heated by
the simulated board through the agent's own PowerManager (its sysfs tree) with the SafetyLayer's heartbeat
fed by the test, on hw-sim's virtual-time loop. A transport delay (the sensor's value reaching the controller
``delay_s`` late) is added in the test's temperature source. The tuner knows none of these numbers.

"True" model of each room, analytic: the fast mode of the 2R2C step response (gain g_f and time constant τf
from the eigen-decomposition of the room's state matrix, mass free to move), then Skogestad's half rule for
the sensor lag (τ1 = τf + τs/2, θ = delay + τs/2). Both loops add half the 30 s control period to θ.

The rooms are coupled to their mass more loosely than hw-sim's default room (h_am 90-150 W/K instead of
256 W/K) so that a 2 K setpoint step is within the fast pole's reach of a 500 W heater: with the default
room 2 K needs ~680 W on the fast pole, the loop saturates for hours on the slow creep and the comparison
measures the actuator limit, not the tuning.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qrad_agent.clock import Clock
from qrad_agent.control.autotune import (
    FopdtModel,
    fit_fopdt,
    fit_step_response,
    plan_step_test,
    run_step_test,
    simc_gains,
)
from qrad_agent.control.pid import PidController, PidGains
from qrad_agent.power.manager import PowerManager
from qrad_agent.safety import SafetyLayer
from qrad_agent.sim import sim_config

hwsim = pytest.importorskip("qrad_hwsim")
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater  # noqa: E402
from qrad_hwsim.room import RoomParams, steady_state  # noqa: E402
from qrad_hwsim.sensor import SensorSpec  # noqa: E402
from qrad_hwsim.virtual_time import run_virtual  # noqa: E402
from qrad_hwsim.weather import Weather  # noqa: E402

CONTROL_PERIOD_S = 30.0
HEATER_STEP_S = 10.0
BASE_W = 120.0
START_AIR_C = 18.0
STEP_K = 2.0
START = datetime(2024, 1, 10)


@dataclass(frozen=True)
class RoomCase:
    name: str
    room: RoomParams
    sensor_tau_s: float
    delay_s: float

    @property
    def outdoor_c(self) -> float:
        """Outdoor temperature (°C, constant) at which BASE_W holds the air at START_AIR_C."""
        return START_AIR_C - BASE_W / self.room.total_loss_w_k

    def true_model(self) -> FopdtModel:
        """Fast mode of the room (eigen-decomposition), half rule for the sensor lag; see the module docstring."""
        p = self.room
        a = np.array([[-(p.h_am_w_k + p.h_ao_w_k) / p.c_air_j_k, p.h_am_w_k / p.c_air_j_k],
                      [p.h_am_w_k / p.c_mass_j_k, -(p.h_am_w_k + p.h_mo_w_k) / p.c_mass_j_k]])
        lam, vecs = np.linalg.eig(a)
        inv = np.linalg.inv(vecs)
        fast = int(np.argmin(-1.0 / lam))
        gain = float(-vecs[0, fast] * inv[fast, 0] / p.c_air_j_k / lam[fast])
        tau_f = float(-1.0 / lam[fast])
        return FopdtModel(gain, tau_f + self.sensor_tau_s / 2, self.delay_s + self.sensor_tau_s / 2)


ROOMS = [
    RoomCase("medium", RoomParams(c_air_j_k=0.4e6, h_am_w_k=150.0, h_ao_w_k=17.0), 60.0, 0.0),
    RoomCase("small-fast-delayed", RoomParams(c_air_j_k=0.15e6, h_am_w_k=110.0, h_ao_w_k=12.0), 30.0, 120.0),
    RoomCase("large-slow-far-sensor", RoomParams(c_air_j_k=0.5e6, h_am_w_k=90.0, h_ao_w_k=20.0), 240.0, 300.0),
]


class DelayedSensor:
    """The room sensor's published value, ``delay_s`` late (transport delay), from the heater's steps."""

    def __init__(self, heater: SimulatedHeater, delay_s: float) -> None:
        self.heater, self.delay_s = heater, delay_s
        self.samples: deque[tuple[float, float | None]] = deque([(0.0, heater.sensor.published_c)])

    def record(self, state) -> None:
        self.samples.append((state.t_s, state.sensor_c))

    def __call__(self) -> float | None:
        horizon_s = self.heater.state.t_s - self.delay_s
        while len(self.samples) > 1 and self.samples[1][0] <= horizon_s + 1e-9:
            self.samples.popleft()
        return self.samples[0][1]


@pytest.fixture(scope="module")
def learned_curve(tmp_path_factory) -> dict:
    """The power manager's curve learned on a simulated board (as the agent learns it in its first hours),
    so that commanded W are real W in the loops below."""
    root = tmp_path_factory.mktemp("curve")
    heater = SimulatedHeater(root, HeaterSpec(), Weather.constant(10.0), START)
    power = PowerManager(sim_config(root).power)
    t_s = 0.0
    for sweep in range(3):
        for level in power.curve.levels:
            power.set_demand(power.curve.power_w(float(level)), t_s)
            for _ in range(4):
                heater.step(HEATER_STEP_S)
                t_s += HEATER_STEP_S
                power.measure(t_s)
    return power.curve.state()


class Rig:
    """One room: simulated heater, the agent's power manager and safety layer on its sysfs tree."""

    def __init__(self, root: Path, case: RoomCase, curve: dict) -> None:
        self.case = case
        cfg = sim_config(root)
        air_c, _ = steady_state(case.room, BASE_W, case.outdoor_c)
        spec = HeaterSpec(sensor=SensorSpec(tau_s=case.sensor_tau_s), room=case.room, initial_air_c=air_c)
        self.heater = SimulatedHeater(root, spec, Weather.constant(case.outdoor_c), START, seed=1)
        self.power = PowerManager(cfg.power)
        self.power.curve.restore(curve)
        self.clock = Clock()
        self.safety = SafetyLayer(cfg.safety, self.power, self.clock, cfg.power.heartbeat_timeout_s)
        self.sensor = DelayedSensor(self.heater, case.delay_s)
        self.air_c: list[float] = []
        self.bias_c = spec.sensor.bias_c

    def on_step(self, state) -> None:
        self.sensor.record(state)
        self.air_c.append(state.air_c)

    async def run(self, body):
        """Run ``body()`` with the heater stepping alongside on the loop's clock."""
        heater_task = asyncio.create_task(self.heater.run(step_s=HEATER_STEP_S, on_step=self.on_step))
        try:
            self.power.set_demand(BASE_W, self.clock.monotonic())
            return await body()
        finally:
            heater_task.cancel()
            await asyncio.gather(heater_task, return_exceptions=True)

    async def step_test(self):
        plan = plan_step_test(BASE_W, START_AIR_C, 0.0, 500.0, max_step_s=6 * 3600.0)
        return await run_step_test(self.power, self.sensor, self.safety, self.clock, plan)

    async def closed_loop(self, gains: PidGains, hours: float = 6.0) -> tuple[float, float]:
        """The daemon's PID (bumpless setpoint changes, as `build_controller` makes it) on a 2 K setpoint
        step from a steady room (6 h: the reference trajectory approaches a new setpoint over about 3 Ti).
        Returns (overshoot as a fraction of the step, settling time (s) into
        ±5 % of the step), both on the true air temperature against its final value (setpoint - bias)."""
        pid = PidController(gains, 0.0, 500.0)
        setpoint_c = (self.sensor() or START_AIR_C)
        pid.reset(output_w=BASE_W)
        pid.update(setpoint_c, self.sensor(), CONTROL_PERIOD_S)
        setpoint_c += STEP_K
        start = len(self.air_c)
        for _ in range(int(hours * 3600 / CONTROL_PERIOD_S)):
            await asyncio.sleep(CONTROL_PERIOD_S)
            t_s = self.clock.monotonic()
            self.power.measure(t_s)
            self.power.set_demand(pid.update(setpoint_c, self.sensor(), CONTROL_PERIOD_S), t_s)
            self.safety.heartbeat(t_s)  # as the thermostat does: the power manager refuses a silent loop
        air = np.asarray(self.air_c[start:])
        target_c = setpoint_c - self.bias_c
        outside = np.nonzero(np.abs(air - target_c) > 0.05 * STEP_K)[0]
        settle_s = (outside[-1] + 1) * HEATER_STEP_S if len(outside) else 0.0
        assert settle_s < hours * 3600 * 0.8, "did not settle within the run"
        return max(0.0, float(air.max() - target_c)) / STEP_K, settle_s


@pytest.fixture
def shm_path(tmp_path):
    """A scratch directory in memory when /dev/shm exists: the simulated sysfs tree is rewritten every step."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="qrad-autotune-", dir=shm) as tmp:
        yield Path(tmp)


def _tune_and_check(root: Path, case: RoomCase, curve: dict) -> dict:
    """Autotune on one rig; then the same 2 K step from the same steady room twice, with the tuned gains and
    with SIMC gains of the true model (fresh rigs, same noise seed: the tuning rig's room is still warm from
    its step test)."""

    async def tune():
        rig = Rig(root / "tune", case, curve)

        async def body():
            response = await rig.step_test()
            return response, fit_step_response(response)

        return await rig.run(body)

    async def closed_loop(name: str, gains: PidGains):
        rig = Rig(root / name, case, curve)
        return await rig.run(lambda: rig.closed_loop(gains))

    response, model = run_virtual(tune())
    gains = simc_gains(model, control_period_s=CONTROL_PERIOD_S)
    true_gains = simc_gains(case.true_model(), control_period_s=CONTROL_PERIOD_S)
    overshoot, settle_s = run_virtual(closed_loop("tuned", gains))
    ref_overshoot, ref_settle_s = run_virtual(closed_loop("true", true_gains))
    return {"response": response, "model": model, "gains": gains, "true_gains": true_gains,
            "overshoot": overshoot, "settle_s": settle_s, "ref_overshoot": ref_overshoot,
            "ref_settle_s": ref_settle_s}


@pytest.mark.parametrize("case", ROOMS, ids=[c.name for c in ROOMS])
def test_autotuned_loop_is_as_good_as_simc_on_the_true_model(case, learned_curve, shm_path):
    r = _tune_and_check(shm_path, case, learned_curve)
    true, fitted = case.true_model(), r["model"]
    print(f"\n{case.name}: true k={true.gain_k_per_w:.5f} K/W tau={true.tau_s:.0f} s theta={true.dead_time_s:.0f} s"
          f" | fitted k={fitted.gain_k_per_w:.5f} tau={fitted.tau_s:.0f} theta={fitted.dead_time_s:.0f}"
          f" rmse={fitted.fit_rmse_k:.3f} K, test {r['response'].t_s[-1] / 60:.0f} min"
          f" | overshoot {r['overshoot']:.1%} (true-model SIMC {r['ref_overshoot']:.1%})"
          f" settling {r['settle_s'] / 60:.1f} min (true-model SIMC {r['ref_settle_s'] / 60:.1f} min)"
          f" | gains {r['gains']} vs {r['true_gains']}")
    assert r["response"].aborted is None
    assert r["overshoot"] <= 0.15
    assert r["settle_s"] <= 1.2 * r["ref_settle_s"]


def test_step_test_aborts_when_safety_forces_minimum_and_leaves_power_to_it(learned_curve, shm_path):
    rig = Rig(shm_path, ROOMS[1], learned_curve)

    async def body():
        test = asyncio.create_task(rig.step_test())
        await asyncio.sleep(1200.0)  # in the hold or the step: either must abort
        rig.safety.enter_safe_state("cpu_overtemperature", "forced by the test")
        response = await asyncio.wait_for(test, timeout=60.0)  # within a sample period or so
        held_level = rig.power.level
        await asyncio.sleep(300.0)
        return response, held_level

    response, held_level = run_virtual(rig.run(body))
    assert response.aborted.startswith("safety: cpu_overtemperature")
    assert held_level == 0.0 and rig.power.level == 0.0  # the runner never overrode the safe state
    assert rig.power.forced_reason is not None


def test_step_test_aborts_on_band_exit_and_restores_the_previous_demand(learned_curve, shm_path):
    rig = Rig(shm_path, ROOMS[1], learned_curve)

    async def body():
        rig.power.set_demand(150.0, rig.clock.monotonic())
        plan = plan_step_test(BASE_W, START_AIR_C, 0.0, 500.0, band_k=0.4, max_hold_s=600.0)
        response = await run_step_test(rig.power, rig.sensor, rig.safety, rig.clock, plan)
        return response, rig.power.demand_w

    response, demand_after_w = run_virtual(rig.run(body))
    assert response.aborted is not None and "left" in response.aborted
    assert max(response.temperature_c) <= START_AIR_C + 0.4 + 0.05
    assert demand_after_w == 150.0


def test_dry_run_plan_is_bounded_and_readable():
    plan = plan_step_test(450.0, 20.0, 0.0, 500.0)
    assert plan.amplitude_w == pytest.approx(-150.0)  # no room above 450 W: steps down
    text = plan.describe()
    assert "450 W" in text and "300 W" in text and "18.0..22.0 °C" in text
    assert plan.max_duration_s == plan.max_hold_s + plan.max_step_s
    with pytest.raises(ValueError):
        plan_step_test(0.0, 20.0, 0.0, 500.0, amplitude_fraction=0.0)


# Derandomized (the same cases every run), with the case a random run once found: tau 300 s under a dead time
# of 873 s was fitted 5.3 % long while each refinement pass looked only one node around the last best.
@settings(max_examples=25, deadline=None, derandomize=True)
@example(gain=0.02, tau_s=300.0, theta_s=873.0, step_w=250.0, y0=25.0)
@given(gain=st.floats(1e-3, 2e-2), tau_s=st.floats(300.0, 5000.0), theta_s=st.floats(20.0, 900.0),
       step_w=st.sampled_from([-150.0, 100.0, 250.0]), y0=st.floats(5.0, 25.0))
def test_fit_recovers_a_synthetic_fopdt(gain, tau_s, theta_s, step_w, y0):
    true = FopdtModel(gain, tau_s, theta_s)
    t = np.arange(-600.0, theta_s + 5 * tau_s, 10.0)
    fitted = fit_fopdt(t, y0 + true.step(t, step_w), step_w)
    assert fitted.gain_k_per_w == pytest.approx(gain, rel=0.05)
    assert fitted.tau_s == pytest.approx(tau_s, rel=0.05)
    assert fitted.dead_time_s == pytest.approx(theta_s, rel=0.05)


def test_simc_rules_and_the_tau_c_choice():
    model = FopdtModel(0.005, 2000.0, 300.0)
    gains = simc_gains(model, tau_c_s=300.0)  # tight: τc = θ
    assert gains.kp_w_per_k == pytest.approx(2000.0 / (0.005 * 600.0))
    assert gains.ti_s == pytest.approx(min(2000.0, 4 * 600.0))
    default = simc_gains(model, control_period_s=30.0)  # τc = max(2θ, τ1/4) with θ = 300 + 15 s
    assert default.kp_w_per_k == pytest.approx(2000.0 / (0.005 * (630.0 + 315.0)))
    fast_room = simc_gains(FopdtModel(0.005, 2000.0, 10.0))  # θ ≪ τ1: the τ1/4 floor decides
    assert fast_room.kp_w_per_k == pytest.approx(2000.0 / (0.005 * 510.0))
