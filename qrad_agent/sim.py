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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig, parse_config
from qrad_agent.control.thermostat import Controller
from qrad_agent.kpi import Kpis, compute_kpis
from qrad_agent.log import setup_logging
from qrad_agent.sdnotify import Notifier

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
    power_w: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every series as a numpy array."""
        return {k: np.asarray(v, dtype=float) for k, v in self.__dict__.items()}


@dataclass
class SimResult:
    """KPIs, the trace and the start of a run."""

    kpis: Kpis
    trace: Trace
    start: datetime
    config: AgentConfig


def run_sim(days: float = 7.0, start: str = "01-01", thermostat: dict[str, Any] | None = None,
            controller_factory: Callable[[AgentConfig], Controller] | None = None, seed: int = 0,
            weather_file: Path | None = None) -> SimResult:
    """Simulate ``days`` from ``start`` (MM-DD or YYYY-MM-DD) and return KPIs and trace.

    ``thermostat`` overrides keys of the config's [thermostat] table; ``controller_factory`` swaps the
    controller (benchmarks compare against a reference library that way).
    """
    heater_mod, virtual_time, weather_mod = _hwsim()
    setup_logging("hwsim-0001", "warning", "console")
    from qrad_hwsim.sim_clock import parse_start

    start_dt = parse_start(start)
    weather = weather_mod.Weather.load(weather_file or weather_mod.default_weather_path())
    with tempfile.TemporaryDirectory(prefix="qrad-sim-", dir=_fast_tmp()) as tmp:
        root = Path(tmp)
        cfg = sim_config(root, thermostat)
        # The room starts heated: air at the comfort setpoint, envelope in balance with it (a heating season
        # under way, as BOPTEST's warm-up period gives), not a cold house that needs days to warm through.
        spec = heater_mod.HeaterSpec(initial_air_c=cfg.thermostat.setpoints.comfort_c)
        heater = heater_mod.SimulatedHeater(root, spec, weather, start_dt, seed=seed)
        controller = controller_factory(cfg) if controller_factory else None
        trace = virtual_time.run_virtual(_simulate(cfg, heater, start_dt, days, controller))
    compute_max = heater.spec.board.n_cores_total * heater.spec.board.f_max_khz / heater.spec.board.f_nominal_khz
    a = trace.arrays()
    kpis = compute_kpis(SIM_STEP_S, a["air_c"], a["setpoint_c"], a["power_w"], a["compute"], compute_max)
    return SimResult(kpis, trace, start_dt, cfg)


async def _simulate(cfg: AgentConfig, heater: Any, start: datetime, days: float,
                    controller: Controller | None) -> Trace:
    loop = asyncio.get_running_loop()
    agent = Agent(cfg, Clock(calendar_start=start, loop_start_s=loop.time()), Notifier({}), controller)
    trace = Trace()

    def record(state: Any) -> None:
        setpoint_c = agent.thermostat.setpoint_c
        if setpoint_c != setpoint_c:  # NaN before the first control step
            return
        trace.t_s.append(state.t_s)
        trace.air_c.append(state.air_c)
        trace.outdoor_c.append(state.outdoor_c)
        trace.setpoint_c.append(setpoint_c)
        trace.power_w.append(state.power_w)
        trace.compute.append(state.compute_core_equiv)

    stop = asyncio.Event()
    agent_task = asyncio.create_task(agent.run(stop), name="agent")
    heater_task = asyncio.create_task(heater.run(step_s=SIM_STEP_S, on_step=record), name="hw-sim")
    try:
        done, _ = await asyncio.wait([agent_task, heater_task], timeout=days * 86400.0,
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a component or the simulator failed: raise it
        stop.set()
        await agent_task
    finally:
        heater_task.cancel()
        agent_task.cancel()
        await asyncio.gather(heater_task, agent_task, return_exceptions=True)
    return trace


def plot(result: SimResult, path: Path) -> None:
    """Draw room, outdoor temperature, setpoint and power over time into ``path`` (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: pip install 'qrad-agent[plot]'") from exc
    a = result.trace.arrays()
    hours = a["t_s"] / 3600.0
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 7))
    top.plot(hours, a["air_c"], label="room air (°C)", lw=0.8)
    top.plot(hours, a["setpoint_c"], label="setpoint (°C)", lw=0.8)
    top.plot(hours, a["outdoor_c"], label="outdoor (°C)", lw=0.8)
    top.set_ylabel("°C")
    top.legend(loc="best")
    bottom.plot(hours, a["power_w"], label="heater power (W)", lw=0.6, color="tab:red")
    bottom.set_ylabel("W")
    bottom.set_xlabel(f"hours from {result.start:%Y-%m-%d %H:%M}")
    bottom.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fast_tmp() -> str | None:
    """/dev/shm (memory) when present: the simulated sysfs tree is rewritten every step."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
