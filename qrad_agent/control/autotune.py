"""Room autotune: an open-loop power step, a first-order-plus-dead-time fit, SIMC PI gains.

Three steps, the last two pure:

1. `run_step_test` holds the present heat demand until the room temperature is steady (or a bounded wait),
   steps the demand by ``amplitude_w`` through the power manager, and records (t, T) on the loop clock until
   the fast pole has settled or ``max_step_s`` is over. It aborts when the safety layer forces minimum power,
   when the room leaves ``center_c ± band_k`` or when no fresh temperature comes; the demand held before
   the test is restored in every case (try/finally), unless the safety layer holds power at its minimum,
   which it then keeps (safety owns the power while it is forced; the thermostat takes over when it clears).
   While it runs, the test stands in for the control loop: it samples the measured power and sends the
   safety layer's heartbeat each sample, so the thermostat must be paused meanwhile (it would overwrite the
   demand).
2. `fit_fopdt` fits  y(t) = y0 + b·t + k·Δu·(1 - e^(-(t-θ)/τ))₊ + r·Δu·(t-θ)₊  by least squares: a grid over
   (θ, τ) with the linear parameters solved exactly at every node, then finer grids around the best.
   The room is second order (2R2C: air ≈ 3-60 min, envelope tens of hours, thermal-and-control.md): its step
   response is the sum of two modes, g_f (1 - e^(-t/τf)) + g_s (1 - e^(-t/τs)). Over a record of a few fast
   time constants the slow mode is still in its linear start g_s t/τs, fitted as the creep ``r``; the model
   returned is the fast mode (k = g_f, τ = τf), the one a thermostat is tuned on; integral action takes care
   of the creep. ``b`` absorbs a drift already present before the step. The step record itself ends once the
   fit says the fast mode has settled (θ + 4τ, two fits in a row agreeing), so the window is a few of its
   time constants.
3. `simc_gains`: Skogestad's SIMC PI rules (S. Skogestad, "Simple analytic rules for model reduction and PID
   controller tuning", J. Process Control 13 (2003) 291-309): Kc = τ1 / (k (τc + θ)), τI = min(τ1, 4 (τc + θ)),
   with θ increased by half the control period (the zero-order hold of a sampled controller, same paper,
   section 4). Default τc = max(2θ, τ1/4): 2θ is the smooth choice (the notes' simulation, τ1 = 60 min,
   θ = 5 min: 11 % overshoot with τc = θ, none with τc = 2θ; the issue allows 15 %); the floor τ1/4 keeps
   the gains from hanging on the dead time when it is a small, poorly known fraction of τ1 (see
   `default_tau_c_s`).

Units: s, K, °C, W throughout.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from qrad_agent.control.pid import PidGains

log = structlog.get_logger(component="autotune")

SETTLED_FAST_POLE_TAUS = 4.0
"""The step ends this many fitted time constants after the dead time (98 % of the fast pole's rise)."""
MIN_STEP_S = 900.0
"""Shortest step record (s) before the settle check may end it."""
FIT_SEARCH_SAMPLES = 300
"""The fit's grid searches use about this many samples (decimated); its last refinement uses them all."""
SETTLE_CHECK_S = 300.0
"""Interval (s) of the settle check's fits during the step."""
SETTLE_AGREEMENT = 0.1
"""Two successive fits agreeing within this fraction (gain and τ) count as converged."""


class PowerSink(Protocol):
    """What the test needs of `PowerManager`."""

    demand_w: float
    forced_reason: str | None
    measured_w: float | None

    def set_demand(self, demand_w: float, t_s: float) -> float: ...

    def measure(self, t_s: float) -> float | None: ...


class SafetyView(Protocol):
    """What the test needs of `SafetyLayer`."""

    conditions: dict[str, str]

    @property
    def forced(self) -> bool: ...

    def heartbeat(self, t_s: float) -> None: ...


class LoopClock(Protocol):
    def monotonic(self) -> float: ...


TemperatureSource = Callable[[], float | None]
"""Returns the room temperature now (°C), or None when no fresh, valid reading exists."""


def hub_temperature(hub, channels: list[str], stale_after_s: float) -> TemperatureSource:
    """The thermostat's own choice of room temperature (`SensorHub.best`) as a `TemperatureSource`."""

    def read() -> float | None:
        choice = hub.best(channels, stale_after_s)
        return None if choice.reading is None else float(choice.reading.value)

    return read


@dataclass(frozen=True)
class StepTestPlan:
    """A bounded open-loop step test.

    base_w: demand held before and restored after the step (W); amplitude_w: signed step (W), so that
    base_w + amplitude_w stays within [min_w, max_w]. center_c ± band_k: the room must stay inside (°C, K).
    max_hold_s: longest wait for a steady room before stepping; steady_window_s / steady_rate_k_per_h: the
    slope of a least-squares line over that window below which the room counts as steady. max_step_s:
    longest step record; sample_period_s: sampling of the record (s).
    """

    base_w: float
    amplitude_w: float
    center_c: float
    band_k: float = 2.0
    max_hold_s: float = 3600.0
    steady_window_s: float = 900.0
    steady_rate_k_per_h: float = 0.3
    max_step_s: float = 3.0 * 3600.0
    sample_period_s: float = 10.0
    min_w: float = 0.0
    max_w: float = 500.0

    def __post_init__(self) -> None:
        target_w = self.base_w + self.amplitude_w
        if self.amplitude_w == 0 or not (self.min_w <= target_w <= self.max_w):
            raise ValueError(f"step {self.base_w:.0f} -> {target_w:.0f} W leaves [{self.min_w}, {self.max_w}] W")
        if not (self.band_k > 0 and self.sample_period_s > 0 and self.max_step_s > self.sample_period_s):
            raise ValueError("band_k, sample_period_s must be > 0 and max_step_s > sample_period_s")

    @property
    def max_duration_s(self) -> float:
        """Upper bound of the whole test (s)."""
        return self.max_hold_s + self.max_step_s

    def describe(self) -> str:
        """The plan for a technician (`--dry-run`)."""
        return "\n".join([
            f"hold {self.base_w:.0f} W until the room is steady (slope < {self.steady_rate_k_per_h} K/h over "
            f"{self.steady_window_s / 60:.0f} min), at most {self.max_hold_s / 60:.0f} min;",
            f"step the demand to {self.base_w + self.amplitude_w:.0f} W ({self.amplitude_w:+.0f} W) and record "
            f"the room every {self.sample_period_s:.0f} s for at most {self.max_step_s / 60:.0f} min;",
            f"abort if the room leaves {self.center_c - self.band_k:.1f}..{self.center_c + self.band_k:.1f} °C, "
            "the safety layer forces minimum power or the room temperature is lost;",
            f"then restore {self.base_w:.0f} W, fit a first-order-plus-dead-time model and propose SIMC PI gains;",
            f"at most {self.max_duration_s / 60:.0f} min in all.",
        ])


def plan_step_test(base_w: float, center_c: float, min_w: float, max_w: float,
                   amplitude_fraction: float = 0.3, **limits: float) -> StepTestPlan:
    """A plan stepping by ``amplitude_fraction`` of the power range, up if there is room, else down.

    ``limits`` overrides any other `StepTestPlan` field (band_k, max_step_s ...).
    """
    base_w = min(max_w, max(min_w, base_w))
    amplitude_w = amplitude_fraction * (max_w - min_w)
    if base_w + amplitude_w > max_w:
        amplitude_w = -min(amplitude_w, base_w - min_w)
    return StepTestPlan(base_w=base_w, amplitude_w=amplitude_w, center_c=center_c, min_w=min_w, max_w=max_w,
                        **limits)


@dataclass
class StepResponse:
    """Record of a step test: times (s, 0 at the step, negative before it), temperatures (°C), the measured
    power (W, NaN when unknown) and the commanded step (W). ``aborted`` is None or the reason."""

    step_w: float
    base_w: float
    t_s: list[float] = field(default_factory=list)
    temperature_c: list[float] = field(default_factory=list)
    measured_w: list[float] = field(default_factory=list)
    aborted: str | None = None
    steady_before: bool = False

    def measured_step_w(self) -> float:
        """Step of the measured power (W) where it was measured on both sides, else the commanded step."""
        t, p = np.asarray(self.t_s), np.asarray(self.measured_w)
        before, after = p[(t < 0) & np.isfinite(p)], p[(t > 60.0) & np.isfinite(p)]
        if len(before) < 3 or len(after) < 3:
            return self.step_w
        measured = float(np.median(after) - np.median(before))
        return measured if measured * self.step_w > 0 else self.step_w


class _Abort(Exception):
    pass


async def run_step_test(power: PowerSink, temperature: TemperatureSource, safety: SafetyView, clock: LoopClock,
                        plan: StepTestPlan, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                        on_phase: Callable[[str], None] | None = None) -> StepResponse:
    """Run ``plan`` (see the module docstring); the result says whether and why it was aborted.
    ``on_phase`` is told each phase as it begins: "hold" (waiting for a steady room), "step" (recording)."""
    phase = on_phase or (lambda name: None)
    if safety.forced:
        return StepResponse(plan.amplitude_w, plan.base_w, aborted="safety: " + _conditions(safety))
    previous_w = power.demand_w
    response = StepResponse(plan.amplitude_w, plan.base_w)
    try:
        phase("hold")
        power.set_demand(plan.base_w, clock.monotonic())
        response.steady_before = await _hold(power, temperature, safety, clock, plan, sleep, response)
        step_t0 = clock.monotonic()
        phase("step")
        power.set_demand(plan.base_w + plan.amplitude_w, step_t0)
        response.t_s = [t - step_t0 for t in response.t_s]
        await _record_step(power, temperature, safety, clock, plan, sleep, response, step_t0)
    except _Abort as abort:
        response.aborted = str(abort)
        log.warning("step test aborted", reason=response.aborted)
    finally:
        if safety.forced:
            log.warning("step test over; safety holds power at its minimum", conditions=_conditions(safety))
        else:
            power.set_demand(previous_w, clock.monotonic())
    return response


def _conditions(safety: SafetyView) -> str:
    return "; ".join(f"{c}: {r}" for c, r in safety.conditions.items())


async def _sample(power: PowerSink, temperature: TemperatureSource, safety: SafetyView, clock: LoopClock,
                  plan: StepTestPlan, sleep: Callable[[float], Awaitable[None]], response: StepResponse,
                  t0_s: float = 0.0) -> None:
    """Wait one sample period, then take a sample; raises _Abort on any abort condition."""
    await sleep(plan.sample_period_s)
    t_s = clock.monotonic()
    if safety.forced:
        raise _Abort("safety: " + _conditions(safety))
    safety.heartbeat(t_s)
    power.measure(t_s)
    value_c = temperature()
    if value_c is None:
        raise _Abort("no valid room temperature")
    if abs(value_c - plan.center_c) > plan.band_k:
        raise _Abort(f"room at {value_c:.2f} °C left {plan.center_c:.1f} ± {plan.band_k} °C")
    response.t_s.append(t_s - t0_s)
    response.temperature_c.append(value_c)
    response.measured_w.append(math.nan if power.measured_w is None else float(power.measured_w))


def slope_k_per_h(t_s: list[float], temperature_c: list[float], window_s: float) -> float | None:
    """Least-squares slope (K/h) over the last ``window_s`` s of samples, None while too short."""
    if not t_s or t_s[-1] - t_s[0] < window_s:
        return None
    t, y = np.asarray(t_s), np.asarray(temperature_c)
    keep = t >= t[-1] - window_s
    return float(np.polyfit(t[keep], y[keep], 1)[0] * 3600.0)


async def _hold(power, temperature, safety, clock, plan, sleep, response) -> bool:
    start_s = clock.monotonic()
    while clock.monotonic() - start_s < plan.max_hold_s:
        power.set_demand(plan.base_w, clock.monotonic())  # the power manager may have been forced meanwhile
        await _sample(power, temperature, safety, clock, plan, sleep, response)
        slope = slope_k_per_h(response.t_s, response.temperature_c, plan.steady_window_s)
        if slope is not None and abs(slope) < plan.steady_rate_k_per_h:
            return True
    return False


async def _record_step(power, temperature, safety, clock, plan, sleep, response, step_t0: float) -> None:
    checks, last = 0, None
    while clock.monotonic() - step_t0 < plan.max_step_s:
        await _sample(power, temperature, safety, clock, plan, sleep, response, step_t0)
        elapsed_s = response.t_s[-1]
        if elapsed_s < MIN_STEP_S or int(elapsed_s // SETTLE_CHECK_S) <= checks:
            continue
        checks = int(elapsed_s // SETTLE_CHECK_S)
        try:
            model = fit_fopdt(response.t_s, response.temperature_c, plan.amplitude_w, coarse=True)
        except ValueError:
            continue
        if last is not None and fast_pole_settled(model, last, elapsed_s, plan.amplitude_w):
            return
        last = model


def fast_pole_settled(model: FopdtModel, previous: FopdtModel, elapsed_s: float, step_w: float) -> bool:
    """True once the record covers θ + 4τ, the rise stands out of the fit noise (5x RMSE) and the fit agrees
    with the previous one (k and τ within SETTLE_AGREEMENT)."""
    agree = all(abs(a / b - 1) < SETTLE_AGREEMENT for a, b in
                ((model.gain_k_per_w, previous.gain_k_per_w), (model.tau_s, previous.tau_s)))
    visible = model.gain_k_per_w * abs(step_w) > 5 * model.fit_rmse_k
    return agree and visible and elapsed_s > model.dead_time_s + SETTLED_FAST_POLE_TAUS * model.tau_s


@dataclass(frozen=True)
class FopdtModel:
    """k e^(-θs) / (τs + 1): gain (K/W), time constant τ (s), dead time θ (s); fit RMSE (K);
    ``creep_k_per_s_w`` is the slow pole's creep per watt of step (K/s/W) fitted alongside."""

    gain_k_per_w: float
    tau_s: float
    dead_time_s: float
    fit_rmse_k: float = 0.0
    creep_k_per_s_w: float = 0.0

    def step(self, t_s: np.ndarray, step_w: float) -> np.ndarray:
        """Response (K) to a step of ``step_w`` W at t = 0, creep excluded."""
        s = np.maximum(np.asarray(t_s, dtype=float) - self.dead_time_s, 0.0)
        return self.gain_k_per_w * step_w * -np.expm1(-s / self.tau_s)


def _grid(t: np.ndarray, y: np.ndarray, thetas: np.ndarray, taus: np.ndarray, creep: bool, drift: bool,
          ) -> tuple[float, float, float, np.ndarray]:
    """Best (sse, θ, τ, coefficients) over the grid; the linear parameters are solved at every node at once
    (normal equations on time scaled to the record, so they stay well conditioned)."""
    span = max(float(t[-1]), 1.0)
    theta, tau = (g.ravel()[:, None] for g in np.meshgrid(thetas, taus, indexing="ij"))
    s = np.maximum(t[None, :] - theta, 0.0)
    rise = -np.expm1(-s / tau)
    zero = np.zeros_like(s)  # an unused parameter's column: the regularisation below keeps it at 0
    columns = [np.ones_like(s), np.broadcast_to(t / span, s.shape) if drift else zero, rise,
               s / span if creep else zero]
    a = np.stack(columns, axis=-1)  # (nodes, samples, params)
    gram = np.einsum("nsp,nsq->npq", a, a) + 1e-9 * len(t) * np.eye(a.shape[-1])
    coef = np.linalg.solve(gram, np.einsum("nsp,s->np", a, y)[..., None])[..., 0]
    sse = np.sum((y[None, :] - np.einsum("nsp,np->ns", a, coef)) ** 2, axis=1)
    best = int(np.argmin(sse))
    scale = np.array([1.0, 1.0 / span, 1.0, 1.0 / span])
    return float(sse[best]), float(theta[best, 0]), float(tau[best, 0]), coef[best] * scale


def fit_fopdt(t_s, temperature_c, step_w: float, *, creep: bool = True, coarse: bool = False) -> FopdtModel:
    """Least-squares FOPDT fit of a step response (see the module docstring for the model).

    t_s: sample times (s), the step at t = 0 (samples before it fix the baseline); temperature_c: °C;
    step_w: the power step (W, signed). creep=False fits a pure FOPDT. Raises ValueError on fewer than
    10 samples after the step or a response that does not move with the step.
    """
    t, y = np.asarray(t_s, dtype=float), np.asarray(temperature_c, dtype=float)
    if step_w == 0 or np.count_nonzero(t > 0) < 10:
        raise ValueError("need a non-zero step and at least 10 samples after it")
    span_s = float(t[-1])
    dt_s = float(np.median(np.diff(t)))
    thetas = np.linspace(0.0, 0.5 * span_s, 26)
    taus = np.geomspace(max(dt_s, span_s / 200), 2.0 * span_s, 30)
    drift = bool(np.count_nonzero(t < 0) >= 3)  # a pre-step drift is only identifiable from pre-step samples
    every = max(1, len(t) // FIT_SEARCH_SAMPLES)  # the searches run on a decimated record, the last on all
    passes = 1 if coarse else 4
    sse, theta, tau, coef = _grid(t[::every], y[::every], thetas, taus, creep, drift)
    for n in range(passes):  # each pass: ±2 nodes of the previous grid (a decimated pass may miss by one), 5x finer
        d_theta, f_tau = thetas[1] - thetas[0], taus[1] / taus[0]
        thetas = np.linspace(max(0.0, theta - 2 * d_theta), theta + 2 * d_theta, 21)
        taus = np.geomspace(tau / f_tau**2, tau * f_tau**2, 21)
        sub = 1 if n == passes - 1 else every
        sse, theta, tau, coef = _grid(t[::sub], y[::sub], thetas, taus, creep, drift)
    gain = float(coef[2]) / step_w
    if not gain > 0:
        raise ValueError(f"the room did not respond to a {step_w:+.0f} W step (fitted gain {gain:.2g} K/W)")
    creep_rate = float(coef[3]) / step_w if creep else 0.0
    return FopdtModel(gain, float(tau), float(theta), math.sqrt(sse / len(t)), creep_rate)


def fit_step_response(response: StepResponse) -> FopdtModel:
    """`fit_fopdt` on a recorded test, per watt of the measured power step."""
    if response.aborted:
        raise ValueError(f"step test aborted: {response.aborted}")
    return fit_fopdt(response.t_s, response.temperature_c, response.measured_step_w())


def default_tau_c_s(model: FopdtModel, control_period_s: float = 0.0) -> float:
    """τc = max(2θ, τ1/4, 2 control periods), θ including half a control period.

    2θ is SIMC's smooth choice (no overshoot on an FOPDT plant). The floor τ1/4 bounds the loop gain
    Kc·k = τ1/(τc + θ) below 4 whatever θ the fit found: a room's dead time is a small fraction of its time
    constant and the least reliable fitted parameter (the half rule puts only half of the sensor lag in it),
    and with θ ≪ τ1 the tight gains would hang on it (Kc/τI ∝ 1/θ²), amplify sensor noise (0.02 °C x
    thousands of W/K) and saturate the 500 W range on any error of a few tenths of a kelvin.
    """
    theta = model.dead_time_s + control_period_s / 2
    return max(2.0 * theta, model.tau_s / 4.0, 2.0 * control_period_s)


def simc_gains(model: FopdtModel, tau_c_s: float | None = None, control_period_s: float = 0.0,
               setpoint_weight_b: float = 1.0) -> PidGains:
    """SIMC PI gains (Skogestad 2003) for ``model``; units of `PidGains` (W/K, s).

    Kc = τ1 / (k (τc + θ)), τI = min(τ1, 4 (τc + θ)), with θ = dead time + control_period_s / 2.
    tau_c_s: closed-loop time constant (s); None -> `default_tau_c_s`.
    """
    theta = model.dead_time_s + control_period_s / 2
    tau_c = default_tau_c_s(model, control_period_s) if tau_c_s is None else tau_c_s
    if not (tau_c > 0 and model.gain_k_per_w > 0 and model.tau_s > 0):
        raise ValueError("need tau_c_s > 0 and a model with positive gain and time constant")
    kc = model.tau_s / (model.gain_k_per_w * (tau_c + theta))
    return PidGains(kp_w_per_k=kc, ti_s=min(model.tau_s, 4.0 * (tau_c + theta)),
                    setpoint_weight_b=setpoint_weight_b)


@dataclass(frozen=True)
class AutotuneResult:
    """Everything `autotune` found: the record, the model (None if aborted or unfit), the proposed gains."""

    response: StepResponse
    model: FopdtModel | None
    gains: PidGains | None
    error: str | None = None

    def status(self) -> dict:
        """Plain-JSON summary for the CLI."""
        out: dict = {"aborted": self.response.aborted, "error": self.error,
                     "samples": len(self.response.t_s), "step_w": round(self.response.step_w, 1)}
        if self.model is not None:
            m = self.model
            out["model"] = {"gain_k_per_w": m.gain_k_per_w, "tau_s": round(m.tau_s, 1),
                            "dead_time_s": round(m.dead_time_s, 1), "fit_rmse_k": round(m.fit_rmse_k, 4)}
        if self.gains is not None:
            out["gains"] = {"kp_w_per_k": round(self.gains.kp_w_per_k, 1), "ti_s": round(self.gains.ti_s, 1)}
        return out


def thermostat_plan(thermostat, **limits: float) -> StepTestPlan:
    """A plan for the heater ``thermostat`` (a `Thermostat`) drives: from its present demand, around the
    setpoint in force now (or the room temperature in mode off), within its output range."""
    setpoint_c = thermostat.setpoint_now_c()
    center_c = setpoint_c if math.isfinite(setpoint_c) else thermostat.pv_c
    if not math.isfinite(center_c):
        raise ValueError("no setpoint or room temperature yet: let the thermostat run one period first")
    return plan_step_test(thermostat.power.demand_w, center_c, thermostat.cfg.output_min_w, thermostat.max_w,
                          **limits)


async def autotune(thermostat, plan: StepTestPlan | None = None,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                   on_phase: Callable[[str], None] | None = None) -> AutotuneResult:
    """Step test, fit and SIMC gains on the parts of a running `Thermostat` (its power manager, hub, safety
    layer and clock). The caller pauses the thermostat's own steps meanwhile and applies the gains on
    confirmation (`PidController.set_gains`, bumpless)."""
    plan = plan or thermostat_plan(thermostat)
    source = hub_temperature(thermostat.hub, thermostat.cfg.room_channels, thermostat.cfg.stale_after_s)
    response = await run_step_test(thermostat.power, source, thermostat.safety, thermostat.clock, plan, sleep,
                                   on_phase)
    if on_phase is not None:
        on_phase("fit")
    try:
        model = fit_step_response(response)
    except ValueError as exc:
        return AutotuneResult(response, None, None, str(exc))
    return AutotuneResult(response, model, simc_gains(model, control_period_s=thermostat.cfg.period_s,
                                                      setpoint_weight_b=thermostat.cfg.pid.setpoint_weight))
