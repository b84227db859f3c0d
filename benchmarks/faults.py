"""Single faults against the power authority: time to safe power (measured), power on bad data or after
stop, anything lost. Issue 12's "Must show".

Each in-process case runs the agent's own components against hw-sim in virtual time (as `qrad-agent sim`
does): a cold room heated at full power, one fault injected through hw-sim's fault control at WARM_UP_S, the
run held HOLD_S after safe power, then the agent stopped. Measured on the simulated board (its electrical
power), never on what the agent commanded:
- safe after: model seconds from the injection until the board draws FLOOR_W or less;
- rose: power above the floor again while the fault holds, or after the stop;
- lost: a latched condition missing from the latch file, or no state file after the stop.
Process cases (SIGKILL, SIGSTOP with the launcher's dead-man, SIGKILL without jobs, a failing log sink) run
the real daemons through their slow tests and print the times those tests measure.

    python benchmarks/faults.py [--no-processes]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.log import setup_logging
from qrad_agent.power.authority import LATCH_FILE, LATCHED
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import virtual_time_agent_data
from qrad_hwsim.devices.suite import DeviceSuite
from qrad_hwsim.faults import FaultControl, TimedFault
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5, 10)
STEP_S = 2.0
WARM_UP_S = 600.0
HOLD_S = 300.0
AFTER_STOP_S = 120.0
FLOOR_W = 60.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    device: str
    kind: str
    goal_s: float  # the detection bound the check states (tests/fire/test_thermal_protection_hil.py)


CASES = [
    Case("room", "stuck", 600.0 + 60.0),  # stale after stuck_after_s, plus a period
    Case("room", "missing", 60.0),
    Case("heater", "fan_failure", 30.0),
    Case("heater", "outlet_blocked", 200.0),
    Case("surface", "detached", 400.0),
    Case("surface", "sentinel", 60.0),
    Case("surface", "unplugged", 60.0),
]


def _config(root: Path) -> dict:
    data = virtual_time_agent_data(root)
    data["logging"] = {"level": "error", "format": "console"}
    data["safety"].update(check_period_s=1.0, surface_channel="surface_temp")
    return data


def run_case(case: Case, root: Path) -> dict:
    weather = Weather.constant(-5.0)
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=15.0), weather, START, seed=3)
    suite = DeviceSuite(root, np.random.default_rng(4), noise=True)
    control = FaultControl(root, heater, suite, [TimedFault(WARM_UP_S, case.device, case.kind)])
    agent = Agent(parse_config(_config(root)), Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))
    trace: list[tuple[float, float]] = []
    marks: dict[str, float] = {}

    def on_step(state) -> None:
        control.step(state, weather)
        trace.append((state.t_s, state.power_w))

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=STEP_S, on_step=on_step))
        task = asyncio.create_task(agent.run(stop))
        await asyncio.sleep(WARM_UP_S + case.goal_s + HOLD_S)
        marks["stop_s"] = heater.state.t_s
        marks["conditions"] = dict(agent.safety.conditions)  # type: ignore[assignment]
        stop.set()
        await asyncio.wait_for(task, 60)
        await asyncio.sleep(AFTER_STOP_S)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)

    run_virtual(scenario())
    heating_w = min(p for t, p in trace if WARM_UP_S - 120 <= t < WARM_UP_S)
    floor_s = next((t for t, p in trace if t >= WARM_UP_S and p <= FLOOR_W), None)
    rose = floor_s is not None and any(p > FLOOR_W for t, p in trace if floor_s < t)
    conditions: dict = marks["conditions"]  # type: ignore[assignment]
    latched = {c for c in conditions if c in LATCHED}
    latch_file = root / "state" / LATCH_FILE
    on_disk = set(json.loads(latch_file.read_text())["latched"]) if latch_file.exists() else set()
    lost = bool(latched - on_disk) or not (root / "state" / "state.json").exists()
    return {"fault": f"{case.device} {case.kind}", "heating_w": heating_w,
            "safe_s": None if floor_s is None else floor_s - WARM_UP_S, "goal_s": case.goal_s,
            "rose": rose, "lost": lost, "conditions": ", ".join(sorted(conditions)) or "-"}


PROCESS_TESTS = {
    "tests/jobs/test_deadman.py": re.compile(r"(SIGKILL|SIGSTOP): jobs at the floor ([0-9.]+) s"),
}


def run_processes() -> list[dict]:
    rows = []
    for path, pattern in PROCESS_TESTS.items():
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", path],
                              cwd=ROOT, capture_output=True, text=True)
        found = pattern.findall(done.stdout)
        for sig, seconds in found:
            goal = 5.0 if sig == "SIGKILL" else 4.0
            rows.append({"fault": f"agent {sig} (jobs, launcher dead-man)", "safe_s": float(seconds),
                         "goal_s": goal, "passed": done.returncode == 0})
        if not found:
            rows.append({"fault": f"{path}: not run here", "safe_s": None, "goal_s": None,
                         "passed": False, "detail": done.stdout[-300:]})
    for path, what in (("tests/agent/test_floor_after_kill.py", "agent SIGKILL (no jobs, ExecStopPost floor)"),
                       ("tests/agent/test_log_sink.py", "log sink ENOSPC / EPIPE")):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path], cwd=ROOT,
                              capture_output=True, text=True)
        rows.append({"fault": what, "safe_s": None, "goal_s": None, "passed": done.returncode == 0})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-processes", action="store_true", help="skip the daemon-process cases")
    args = parser.parse_args()
    setup_logging("faults-bench", "error", "console")
    print(f"{'fault':28} {'heating W':>9} {'safe after s':>12} {'goal s':>7} {'rose':>5} {'lost':>5}  conditions")
    ok = True
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="qrad-faults-") as tmp:
            row = run_case(case, Path(tmp))
        safe = "never" if row["safe_s"] is None else f"{row['safe_s']:.0f}"
        met = row["safe_s"] is not None and row["safe_s"] <= row["goal_s"] and not row["rose"] and not row["lost"]
        ok &= met
        print(f"{row['fault']:28} {row['heating_w']:9.0f} {safe:>12} {row['goal_s']:7.0f} {str(row['rose']):>5} "
              f"{str(row['lost']):>5}  {row['conditions']}{'' if met else '  <- goal missed'}", flush=True)
    if not args.no_processes:
        for row in run_processes():
            safe = "-" if row["safe_s"] is None else f"{row['safe_s']:.2f}"
            goal = "-" if row["goal_s"] is None else f"{row['goal_s']:.0f}"
            ok &= row["passed"]
            print(f"{row['fault']:44} safe after {safe:>6} s (goal {goal} s)  test "
                  f"{'passed' if row['passed'] else 'FAILED'}", flush=True)
    print("all goals met" if ok else "some goals missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
