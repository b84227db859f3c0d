"""Thermostat benchmark: PID against the hysteresis baseline and against simple-pid, same week, one run.

Runs `qrad-agent sim`'s simulation (the agent's own code against hw-sim, virtual time, Lyon-Bron weather):
1. the first week of January at a constant 20 °C setpoint: PID (ours), hysteresis (0.5 K differential,
   0 / 500 W) and the reference library simple-pid given the same gains, behind the same thermostat;
2. a 2 K setpoint step (18 -> 20 °C at 06:00 on the second day), for the overshoot.
Prints a KPI table per scenario and checks the issue's goals against the hysteresis baseline.

    python benchmarks/thermostat.py [--days 7]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor

from qrad_agent.config import AgentConfig
from qrad_agent.kpi import Kpis, format_table
from qrad_agent.sim import run_sim

STEP_SCHEDULE = [{"days": "thu", "start": "00:00", "mode": "eco"},
                 {"days": "fri", "start": "06:00", "mode": "comfort"}]
STEP_SETPOINTS = {"comfort_c": 20.0, "eco_c": 18.0, "frost_c": 7.0}


class SimplePidStep:
    """simple-pid 2.0.1's PID behind the thermostat's Controller protocol, with our gains mapped to its
    parallel form (Ki = Kp/Ti, Kd = Kp·Td) and the same output limits."""

    def __init__(self, cfg: AgentConfig) -> None:
        from simple_pid import PID

        g = cfg.thermostat.pid
        limits = (cfg.thermostat.output_min_w, cfg.thermostat.output_max_w or cfg.power.max_w)
        self.pid = PID(g.kp_w_per_k, g.kp_w_per_k / g.ti_s, g.kp_w_per_k * g.td_s, sample_time=None,
                       output_limits=limits)

    def step(self, setpoint_c: float, pv_c: float, dt_s: float, applied_w: float | None) -> float:
        self.pid.setpoint = setpoint_c
        return float(self.pid(pv_c, dt=dt_s))

    def restart(self, output_w: float, pv_c: float) -> None:
        self.pid.set_auto_mode(False)
        self.pid.set_auto_mode(True, last_output=output_w)


def _run(job: tuple[str, str, float]) -> tuple[str, str, Kpis]:
    scenario, name, days = job
    thermostat: dict = {"mode": "comfort"}
    if scenario == "step":
        thermostat = {"mode": "auto", "schedule": STEP_SCHEDULE, "setpoints": STEP_SETPOINTS}
    factory = None
    if name == "hysteresis":
        thermostat["algorithm"] = "hysteresis"
    elif name == "simple-pid":
        factory = SimplePidStep
    result = run_sim(days=days, start="01-01", thermostat=thermostat, controller_factory=factory)
    return scenario, name, result.kpis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0, help="length of the constant-setpoint week")
    args = parser.parse_args()
    names = ["pid", "hysteresis", "simple-pid"]
    jobs = [("week", n, args.days) for n in names] + [("step", n, 3.0) for n in names]
    with ProcessPoolExecutor() as pool:
        results = list(pool.map(_run, jobs))
    tables: dict[str, dict[str, Kpis]] = {"week": {}, "step": {}}
    for scenario, name, kpis in results:
        tables[scenario][name] = kpis
    print(f"Scenario 1: constant 20 °C, {args.days:g} days from 01-01, Lyon-Bron weather")
    print(format_table(tables["week"]))
    print("\nScenario 2: 2 K setpoint step (18 -> 20 °C) on day 2, 3 days")
    print(format_table(tables["step"]))
    pid, base = tables["week"]["pid"], tables["week"]["hysteresis"]
    goals = [
        ("RMS error <= 1/3 of hysteresis", pid.rms_error_k <= base.rms_error_k / 3,
         f"{pid.rms_error_k:.4f} K vs {base.rms_error_k / 3:.4f} K"),
        ("discomfort no higher", pid.discomfort_kh <= base.discomfort_kh + 1e-9,
         f"{pid.discomfort_kh:.2f} vs {base.discomfort_kh:.2f} K·h"),
        ("energy within +2 %", pid.energy_kwh <= base.energy_kwh * 1.02,
         f"{pid.energy_kwh:.2f} vs {base.energy_kwh:.2f} kWh ({100 * (pid.energy_kwh / base.energy_kwh - 1):+.2f} %)"),
        (">= 10x fewer compute stop/start cycles", pid.compute_cycles * 10 <= base.compute_cycles,
         f"{pid.compute_cycles} vs {base.compute_cycles}"),
        ("overshoot after a 2 K step <= 0.3 K", (tables["step"]["pid"].overshoot_k or 0.0) <= 0.3,
         f"{tables['step']['pid'].overshoot_k:.3f} K"),
    ]
    print("\nGoals (PID against the hysteresis baseline)")
    for label, ok, detail in goals:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<42} {detail}")
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
