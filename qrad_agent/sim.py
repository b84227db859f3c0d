"""`qrad-agent sim`: the agent's own components against hw-sim's heater and room, in virtual time.

The agent is built from hw-sim's example configuration (its paths moved to a temporary sysfs tree), so
the code under test is exactly the daemon's: sensor hub, thermostat, power manager and safety layer, reading
and writing the simulated board's files. The run happens on hw-sim's virtual-time event loop: a week of
the real weather takes seconds. hw-sim must be installed (``pip install -e ./hw-sim``).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig, parse_config
from qrad_agent.control.thermostat import Controller
from qrad_agent.kpi import COMFORT_BAND_K, Kpis, compute_kpis
from qrad_agent.log import setup_logging
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim_forecast import DrEvent

SIM_STEP_S = 30.0
"""Model step of the simulated room and board (s)."""


def _hwsim():
    try:
        import qrad_hwsim.heater as heater
        import qrad_hwsim.virtual_time as virtual_time
        import qrad_hwsim.weather as weather
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SystemExit("qrad-agent sim needs hw-sim: pip install -e ./hw-sim") from exc
    return heater, virtual_time, weather


def example_config_data() -> dict[str, Any]:
    """hw-sim's example agent configuration, decoded."""
    text = importlib.resources.files("qrad_hwsim").joinpath("agent.toml").read_text()
    return tomllib.loads(text)


def virtual_time_agent_data(root: Path) -> dict[str, Any]:
    """hw-sim's example agent config for a whole agent in-process on a simulated heater under ``root`` in
    virtual time: its sysfs sensors only (no serial ports or FIFOs there), comfort mode on room_temp, fire
    detection off, warnings only on the console. Tests and benchmarks adjust what they exercise."""
    data = example_config_data()
    data["state_dir"] = str(root / "state")
    data["api"] = {"socket_path": str(root / "api.sock")}
    data["power"].update(sysfs_root=str(root), jobs_cgroup=str(root / "fs/cgroup/qrad-jobs"))
    data["logging"] = {"level": "warning", "format": "console"}
    keep = {"room_sht4x", "board", "cpu0", "cpu1", "cpu2", "cpu3"}
    data["sensors"] = [s for s in data["sensors"] if s["name"] in keep]
    data["thermostat"].update(mode="comfort", room_channels=["room_temp"])
    data["fire"] = {"enabled": False}
    return data


def sim_config(root: Path, thermostat: dict[str, Any] | None = None) -> AgentConfig:
    """The example config with its paths under ``root``, quiet logs, and ``thermostat`` keys overridden.

    Only the board's hwmon sensors are kept (virtual time has no serial ports or microphone), and the safety
    check runs every 10 s instead of 1 s here: it reads every CPU temperature file each time, and
    a week at 1 s would spend most of the run in those reads; the simulated boards have no over-temperature.
    """
    data = example_config_data()
    data["state_dir"] = str(root / "state")
    data["api"] = {"socket_path": str(root / "api.sock")}
    data["power"].update(sysfs_root=str(root), jobs_cgroup=str(root / "fs/cgroup/qrad-jobs"))
    data["logging"] = {"level": "warning", "format": "console"}
    data["safety"]["check_period_s"] = 10.0
    # Virtual time has no serial ports or microphone: keep the sysfs sensors the simulated board has.
    data["sensors"] = [s for s in data["sensors"] if s["type"] == "hwmon" and s["chip"] == "sht4x"]
    data["thermostat"]["room_channels"] = ["room_temp"]
    # Fire detection is evaluated on its own scenarios (benchmarks/fire.py), not in the heating week.
    data["fire"] = {"enabled": False}
    for key, value in (thermostat or {}).items():
        if isinstance(value, dict):
            data["thermostat"].setdefault(key, {}).update(value)
        else:
            data["thermostat"][key] = value
    return parse_config(data, "hw-sim example config")


@dataclass
class Trace:
    """Samples of a run, one per model step."""

    t_s: list[float] = field(default_factory=list)
    air_c: list[float] = field(default_factory=list)
    outdoor_c: list[float] = field(default_factory=list)
    setpoint_c: list[float] = field(default_factory=list)
    target_c: list[float] = field(default_factory=list)
    """What the controller followed (°C): the setpoint shaped by the predictor, else the setpoint."""
    power_w: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every series as a numpy array."""
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class SimParameters:
    """What a run was asked to simulate: enough to run it again."""

    algorithm: str
    start: datetime
    days: float
    seed: int
    weather_file: Path
    step_s: float = SIM_STEP_S
    controller: str = "agent"
    """"agent" for the configured thermostat, else the name of the swapped-in controller factory."""
    predict: bool = False
    """Predictive heating (optimal start/stop on the learned room model) on."""
    warmup_days: float = 0.0
    forecast_error_k: float | None = 0.0
    """RMS error (K) at 24 h of the weather forecast sent to the agent; None: no forecast sent."""
    dr_event: DrEvent | None = None
    """The demand-response request the platform sent, if any."""

    @property
    def end(self) -> datetime:
        """Calendar time at the end of the run."""
        return self.start + timedelta(days=self.days)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON values (dates as ISO 8601, the weather file as a path string)."""
        return {"algorithm": self.algorithm, "controller": self.controller, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "days": self.days, "seed": self.seed,
                "weather_file": str(self.weather_file), "step_s": self.step_s, "predict": self.predict,
                "warmup_days": self.warmup_days, "forecast_error_k": self.forecast_error_k,
                "dr_event": None if self.dr_event is None else
                asdict(self.dr_event) | {"start": self.dr_event.start.isoformat()}}


@dataclass
class SimResult:
    """KPIs, the trace and the parameters of a run."""

    kpis: Kpis
    trace: Trace
    start: datetime
    config: AgentConfig
    parameters: SimParameters
    demand_forecasts: list[tuple[float, list[float]]] = field(default_factory=list)
    """The agent's hourly heat-demand forecasts: (s from ``start`` of the first slot, W per 15-min slot)."""
    demand_response: dict[str, Any] = field(default_factory=dict)
    """With a demand-response event: the agent's ``answer`` and the ``outcome`` it recorded (None if the run
    ended first)."""


def run_sim(days: float = 7.0, start: str = "01-01", thermostat: dict[str, Any] | None = None,
            controller_factory: Callable[[AgentConfig], Controller] | None = None, seed: int = 0,
            weather_file: Path | None = None,
            progress: Callable[[float], None] | None = None, warmup_days: float = 0.0,
            forecast_error_k: float | None = 0.0, dr_event: DrEvent | None = None) -> SimResult:
    """Simulate ``days`` from ``start`` (MM-DD or YYYY-MM-DD) and return KPIs and trace.

    ``thermostat`` overrides keys of the config's [thermostat] table; ``controller_factory`` swaps the
    controller (benchmarks compare against a reference library that way). ``progress`` is called after
    every model step with the fraction of the run done (0..1). ``warmup_days``: the run starts that much
    earlier and only the days from ``start`` are traced and scored (the room model learns in it).
    ``forecast_error_k``: RMS error (K) at 24 h of the hourly weather forecast sent to the agent (None: no
    forecast at all, the agent estimates; see qrad_agent/sim_forecast.py). ``dr_event``: a demand-response
    request the platform sends (its answer and outcome in the result). Raises ValueError for a bad
    start date or weather file or a ``dr_event`` that starts outside the run, FileNotFoundError for a
    missing weather file.
    """
    heater_mod, virtual_time, weather_mod = _hwsim()
    setup_logging("hwsim-0001", "warning", "console")
    from qrad_hwsim.sim_clock import parse_start

    start_dt = parse_start(start)
    run_start = start_dt - timedelta(days=warmup_days)
    run_end = start_dt + timedelta(days=days)
    if dr_event is not None and not run_start <= dr_event.start < run_end:
        raise ValueError(f"the demand-response event at {dr_event.start:%Y-%m-%d %H:%M} is outside the simulated "
                         f"run, {run_start:%Y-%m-%d %H:%M} to {run_end:%Y-%m-%d %H:%M}")
    weather = weather_mod.Weather.load(weather_file or weather_mod.default_weather_path())
    with tempfile.TemporaryDirectory(prefix="qrad-sim-", dir=_fast_tmp()) as tmp:
        root = Path(tmp)
        cfg = sim_config(root, thermostat)
        # The room starts heated: air at the comfort setpoint, envelope in balance with it (a heating season
        # under way, as BOPTEST's warm-up period gives), not a cold house that needs days to warm through.
        spec = heater_mod.HeaterSpec(initial_air_c=cfg.thermostat.setpoints.comfort_c)
        heater = heater_mod.SimulatedHeater(root, spec, weather, run_start, seed=seed)
        controller = controller_factory(cfg) if controller_factory else None
        forecasts: list[tuple[float, list[float]]] = []
        dr: dict[str, Any] = {}
        trace = virtual_time.run_virtual(_simulate(cfg, heater, run_start, days, controller, progress,
                                                   warmup_days * 86400.0, forecast_error_k, seed, forecasts,
                                                   dr_event, dr))
    compute_max = heater.spec.board.n_cores_total * heater.spec.board.f_max_khz / heater.spec.board.f_nominal_khz
    a = trace.arrays()
    kpis = compute_kpis(SIM_STEP_S, a["air_c"], a["setpoint_c"], a["power_w"], a["compute"], compute_max,
                        floor_w=cfg.power.idle_w)
    parameters = SimParameters(
        algorithm=cfg.thermostat.algorithm, start=start_dt, days=days, seed=seed,
        weather_file=Path(weather_file or weather_mod.default_weather_path()),
        controller=getattr(controller_factory, "__name__", "custom") if controller_factory else "agent",
        predict=cfg.thermostat.predict.enabled, warmup_days=warmup_days, forecast_error_k=forecast_error_k,
        dr_event=dr_event)
    warmup_s = warmup_days * 86400.0
    return SimResult(kpis, trace, start_dt, cfg, parameters,
                     [(t - warmup_s, d) for t, d in forecasts if t >= warmup_s], dr)


async def _simulate(cfg: AgentConfig, heater: Any, start: datetime, days: float,
                    controller: Controller | None, progress: Callable[[float], None] | None,
                    warmup_s: float = 0.0, forecast_error_k: float | None = 0.0, seed: int = 0,
                    forecasts: list[tuple[float, list[float]]] | None = None, dr_event: DrEvent | None = None,
                    dr: dict[str, Any] | None = None) -> Trace:
    from qrad_agent import sim_forecast

    loop = asyncio.get_running_loop()
    agent = Agent(cfg, Clock(calendar_start=start, loop_start_s=loop.time()), Notifier({}), controller)
    trace = Trace()
    duration_s = days * 86400.0

    feeder = sim_forecast.Feeder(agent.thermostat, heater, start, forecast_error_k, seed)
    feeder.demand = forecasts if forecasts is not None else []
    feeder.dr = dr_event

    def record(state: Any) -> None:
        if progress is not None:
            progress(state.t_s / (warmup_s + duration_s))
        feeder.on_step(state.t_s)
        setpoint_c = agent.thermostat.setpoint_c
        if setpoint_c != setpoint_c or state.t_s <= warmup_s:  # NaN before the first control step
            return
        trace.t_s.append(state.t_s - warmup_s)
        trace.air_c.append(state.air_c)
        trace.outdoor_c.append(state.outdoor_c)
        trace.setpoint_c.append(setpoint_c)
        target_c = agent.thermostat.target_c
        trace.target_c.append(setpoint_c if target_c != target_c else target_c)
        trace.power_w.append(state.power_w)
        trace.compute.append(state.compute_core_equiv)

    stop = asyncio.Event()
    agent_task = asyncio.create_task(agent.run(stop), name="agent")
    async def heater_half_a_step_later() -> None:
        # The model steps half a step off the control period's instants: no model step and control step
        # (or RAPL read) fall on the same virtual instant, whose order would depend on the timer heap's
        # shape, i.e. on unrelated timers (that tie moved the week's discomfort between 3.5 and 5 K·h).
        await asyncio.sleep(SIM_STEP_S / 2)
        await heater.run(step_s=SIM_STEP_S, on_step=record)

    heater_task = asyncio.create_task(heater_half_a_step_later(), name="hw-sim")
    try:
        done, _ = await asyncio.wait([agent_task, heater_task], timeout=warmup_s + duration_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a component or the simulator failed: raise it
        stop.set()
        await agent_task
        if dr is not None and dr_event is not None:
            outcomes = agent.thermostat.dr.outcomes if agent.thermostat.dr is not None else []
            dr["answer"] = feeder.dr_answer
            dr["outcome"] = outcomes[-1].as_dict() if outcomes else None
    finally:
        heater_task.cancel()
        agent_task.cancel()
        await asyncio.gather(heater_task, agent_task, return_exceptions=True)
    return trace


def forecast_errors(result: SimResult) -> tuple[float, float, int]:
    """(MAE of the agent's heat-demand forecast, MAE of persistence, forecasts scored), W: hourly means over the
    24 h after each forecast issued at least a day after the start and ending before the end of the run,
    against the power the heater then drew; persistence is the same hour the day before. (nan, nan, 0)
    when none can be scored (runs shorter than two days, or no ready model)."""
    a = result.trace.arrays()
    t_s, power_w = a["t_s"], a["power_w"]
    if len(t_s) == 0:
        return float("nan"), float("nan"), 0
    end_s = t_s[-1]

    def hourly(from_s: float) -> np.ndarray:
        edges = from_s + 3600.0 * np.arange(25)
        index = np.searchsorted(t_s, edges)
        return np.array([power_w[i:j].mean() if j > i else np.nan for i, j in zip(index[:-1], index[1:])])

    ours, persistence = [], []
    for start_s, slots in result.demand_forecasts:
        if start_s < 86400.0 or start_s + 86400.0 > end_s:
            continue
        actual = hourly(start_s)
        predicted = np.asarray(slots, dtype=float).reshape(24, -1).mean(axis=1)
        ours.append(np.nanmean(np.abs(predicted - actual)))
        persistence.append(np.nanmean(np.abs(hourly(start_s - 86400.0) - actual)))
    if not ours:
        return float("nan"), float("nan"), 0
    return float(np.mean(ours)), float(np.mean(persistence)), len(ours)


PLOT_MEAN_S = 900.0
"""Heater power is drawn as its mean over windows of this length (s): a 15-min mean, as electricity meters
integrate; the raw 30 s samples of a modulating heater fill the panel solid."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install 'qrad-agent[plot]'") from exc
    return plt


def check_plot_path(path: Path) -> None:
    """Check, before a run, that a plot can be written to ``path``.

    Raises ValueError naming the problem: matplotlib missing, a format matplotlib cannot write (taken from
    the suffix), a missing or non-directory parent, a parent not writable, or ``path`` being a directory.
    """
    plt = _pyplot()
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if path.is_dir():
        raise ValueError(f"plot file {path} is a directory")
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(f"plot file {path}: the name must end in one of "
                         f"{', '.join('.' + f for f in sorted(formats))} (.png recommended)")
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"plot file {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"plot file {path}: {parent} is not a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"plot file {path} exists and is not writable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"plot file {path}: directory {parent} is not writable")


def window_mean(values: np.ndarray, per_window: int) -> np.ndarray:
    """Mean of consecutive windows of ``per_window`` samples (the last window may be shorter).

    Shape (n,) -> (ceil(n / per_window),). Raises ValueError if ``per_window`` < 1.
    """
    if per_window < 1:
        raise ValueError(f"window of {per_window} samples")
    n = len(values)
    if n == 0:
        return np.asarray(values, dtype=float)
    starts = np.arange(0, n, per_window)
    sums = np.add.reduceat(np.asarray(values, dtype=float), starts)
    counts = np.diff(np.append(starts, n))
    return sums / counts


def plot_title(result: SimResult) -> str:
    """Two lines: the algorithm, dates and weather, then the KPIs with their units."""
    p, k = result.parameters, result.kpis
    last_day = p.end - timedelta(microseconds=1)
    dates = f"{p.start:%a %d %b %Y} to {last_day:%a %d %b %Y}" if p.days >= 1 else f"{p.start:%a %d %b %Y}"
    overshoot = "n/a" if k.overshoot_k is None else f"{k.overshoot_k:.2f} K"
    return (f"{p.algorithm.upper()} thermostat, {p.days:g} day(s), {dates}, weather {p.weather_file.name}\n"
            f"RMS error {k.rms_error_k:.3f} K · discomfort {k.discomfort_kh:.2f} K·h · overshoot {overshoot} · "
            f"energy {k.energy_kwh:.1f} kWh (mean {k.mean_power_w:.0f} W) · "
            f"compute {k.compute_core_h:.0f} core·h, {k.compute_cycles} stop/start")


def plot(result: SimResult, path: Path) -> None:
    """Draw the run into ``path`` (format from its suffix; check it first with `check_plot_path`).

    Three panels sharing a calendar axis (major ticks at midnight with weekday and date): room air with the
    setpoint and its comfort band (°C, scaled to them so the tracking shows), outdoor air (°C), and heater
    power as a 15-min mean (W). The title names the algorithm, the dates and the KPIs.
    Raises ValueError without matplotlib, OSError if the file cannot be written.
    """
    plt = _pyplot()
    import matplotlib.dates as mdates

    a = result.trace.arrays()
    start = np.datetime64(result.start.replace(tzinfo=None), "ms")
    when = start + (a["t_s"] * 1000.0).astype("timedelta64[ms]")
    per_window = max(1, round(PLOT_MEAN_S / result.parameters.step_s))
    mean_w = window_mean(a["power_w"], per_window)
    window_when = when[::per_window]

    fig, (room, outdoor, power) = plt.subplots(
        3, 1, sharex=True, figsize=(13, 8.5), gridspec_kw={"height_ratios": [3, 1.3, 1.6]})
    room.fill_between(when, a["setpoint_c"] - COMFORT_BAND_K, a["setpoint_c"] + COMFORT_BAND_K, step="post",
                      color="tab:green", alpha=0.12, lw=0, label=f"comfort band (±{COMFORT_BAND_K:g} K)")
    room.plot(when, a["setpoint_c"], drawstyle="steps-post", color="tab:green", lw=1.2, label="setpoint")
    room.plot(when, a["air_c"], color="tab:blue", lw=0.9, label="room air")
    room.set_ylabel("room (°C)")
    low_c, high_c = room.get_ylim()
    room.set_ylim(low_c, high_c + 0.2 * (high_c - low_c))  # headroom for the legend
    room.legend(loc="upper right", fontsize="small", ncols=3)
    outdoor.plot(when, a["outdoor_c"], color="tab:purple", lw=0.9, label="outdoor air")
    outdoor.set_ylabel("outdoor (°C)")
    outdoor.legend(loc="upper right", fontsize="small")
    power.step(window_when, mean_w, where="post", color="tab:red", lw=0.9,
               label=f"heater power, {PLOT_MEAN_S / 60:g}-min mean")
    power.set_ylabel("power (W)")
    power.set_ylim(0, 1.15 * max(float(np.max(mean_w, initial=0.0)), 1.0))  # a flat top stays visible
    power.legend(loc="upper right", fontsize="small")
    for ax in (room, outdoor, power):
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    power.xaxis.set_major_locator(mdates.DayLocator())
    power.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    power.xaxis.set_minor_locator(mdates.HourLocator(byhour=[6, 12, 18]))
    if result.parameters.days <= 2:
        power.xaxis.set_minor_formatter(mdates.DateFormatter("%H:%M"))
    end = start + np.timedelta64(round(result.parameters.days * 86400.0 * 1000.0), "ms")
    power.set_xlim(start, end)
    fig.suptitle(plot_title(result), fontsize="medium")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _fast_tmp() -> str | None:
    """/dev/shm (memory) when present: the simulated sysfs tree is rewritten every step."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
