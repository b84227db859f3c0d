"""Thermal protection in the loop: each fault of issue 6 item 6, injected in hw-sim through the simulator's
own fault control (what ``qrad-hwsim fault`` and ``serve --scenario`` drive), ends at the compute power floor
within the check's stated time, with the condition named; healthy runs with the same timing raise nothing.

The whole agent runs in-process against the simulated heater in virtual time (hw-sim's VirtualTimeLoop): the
board's sysfs files, the nct7802 board monitor (temp3: the panel probe) and coretemp. Times are measured on
the model clock from the injection. Each check's bound is its stated worst case (thermal_protection.py's
docstring) counted from the moment its condition physically exists, plus the sampling chain: a board sensor
period, a safety check period and two model steps. Run with ``-s`` to see the measured times.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import SafetyConfig, parse_config
from qrad_agent.errors import Refused
from qrad_agent.fire.config import ThermalProtectionConfig
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import virtual_time_agent_data
from qrad_hwsim.devices.suite import DeviceSuite
from qrad_hwsim.faults import FaultControl, TimedFault
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5, 10)  # a Monday morning, comfort at 20 °C
STEP_S = 2.0
WARM_UP_S = 600.0  # heating from cold: full power, the panel settled (2.2 time constants)
HOLD_S = 180.0  # after safe power: it must stay there while heat is still wanted
FLOOR_W = 60.0  # the board's idle draw (50 W) with the jobs' quota and P-states at their minimum
CFG = ThermalProtectionConfig()
BOARD_PERIOD_S, SAFETY_PERIOD_S = 5.0, 1.0
SAMPLING_S = BOARD_PERIOD_S + SAFETY_PERIOD_S + 2 * STEP_S
CPU_MAX_C = 95.0


@dataclass
class Run:
    """What one run saw, on the model clock (s)."""

    inject_s: float
    detect_s: float | None = None
    floor_s: float | None = None
    conditions: dict[str, str] = field(default_factory=dict)
    first_condition: str | None = None
    trace: list[tuple[float, float, float | None, float, float]] = field(default_factory=list)
    max_w_after_floor: float = 0.0
    logs: list[dict] = field(default_factory=list)
    min_power_before_w: float = math.inf
    demand_w: float = 0.0  # the thermostat's demand at the end

    def first(self, predicate) -> float | None:
        """The first model time after the injection when ``predicate(t, power, probe, cpu, room)`` holds."""
        return next((row[0] for row in self.trace if row[0] >= self.inject_s and predicate(*row)), None)


def _config(root: Path) -> dict:
    data = virtual_time_agent_data(root)
    # The idle cases step the setpoint to 25 °C to ask for full power: with the default set-point weight (0) the
    # integral brings it within a few control periods.
    data["safety"].update(check_period_s=SAFETY_PERIOD_S, cpu_temp_max_c=CPU_MAX_C,
                          surface_channel="surface_temp")
    assert next(s for s in data["sensors"] if s["name"] == "board")["period_s"] == BOARD_PERIOD_S
    return data


def _run(root: Path, fault: TimedFault | None, initial_air_c: float, outdoor_c: float,
         demand_after_s: float | None = None) -> Run:
    """Heat (or idle) for WARM_UP_S, inject ``fault``, run until safe power and HOLD_S more."""
    weather = Weather.constant(outdoor_c)
    heater = SimulatedHeater(root, HeaterSpec(initial_air_c=initial_air_c), weather, START, seed=3)
    suite = DeviceSuite(root, np.random.default_rng(4), noise=True)
    control = FaultControl(root, heater, suite, [fault] if fault else [])
    agent = Agent(parse_config(_config(root)), Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))
    inject_s = fault.at_s if fault else WARM_UP_S
    run = Run(inject_s)

    def on_step(state) -> None:
        control.step(state, weather)
        probe = suite.board.truth.get("temp3_input")
        cpu = max(heater.board.cpu_temp_c)
        run.trace.append((state.t_s, state.power_w, probe, cpu, state.sensor_c or state.air_c))
        if state.t_s < inject_s:
            if state.t_s >= inject_s - 300.0:  # the last 5 min before the injection
                run.min_power_before_w = min(run.min_power_before_w, state.power_w)
            return
        if agent.safety.conditions and run.detect_s is None:
            run.detect_s, run.first_condition = state.t_s, next(iter(agent.safety.conditions))
        if run.detect_s is not None and run.floor_s is None and state.power_w <= FLOOR_W:
            run.floor_s = state.t_s
        elif run.floor_s is not None:
            run.max_w_after_floor = max(run.max_w_after_floor, state.power_w)

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=STEP_S, on_step=on_step), name="hw-sim")
        task = asyncio.create_task(agent.run(stop), name="agent")
        await asyncio.sleep(inject_s)
        if fault is None:  # as long as the slowest check's window plus the hold
            if demand_after_s is not None:  # idle, then a step to full power
                await asyncio.sleep(demand_after_s)
                agent.thermostat.set_override(25.0, None)
            await asyncio.sleep(CFG.gain_time_s + 2 * SAMPLING_S + HOLD_S - (demand_after_s or 0.0))
        else:
            while run.floor_s is None and heater.state.t_s < inject_s + CFG.gain_time_s + 120.0:
                await asyncio.sleep(STEP_S)
            if demand_after_s is not None:  # a heat demand now must not lift the floor
                await asyncio.sleep(demand_after_s)
                agent.thermostat.set_override(25.0, None)
            await asyncio.sleep(HOLD_S)
        run.conditions, run.demand_w = dict(agent.safety.conditions), agent.thermostat.demand_w
        stop.set()
        await asyncio.wait_for(task, 30)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)

    with capture_logs() as logs:
        run_virtual(scenario())
    run.logs = logs
    return run


def _cpu_over(run: Run) -> float | None:
    return run.first(lambda t, power, probe, cpu, room: round(cpu) > CPU_MAX_C)  # coretemp: whole degrees


def _panel_over(run: Run) -> float | None:
    return run.first(lambda t, power, probe, cpu, room: probe is not None and probe > CFG.surface_max_c)


def _probe_cold(run: Run) -> float | None:
    """The last moment the probe looked like a warm panel: no_response's watch runs from there."""
    return run.first(lambda t, power, probe, cpu, room: probe is not None
                     and probe - room < CFG.gain_settled_k)


def _probe_risen(run: Run) -> float | None:
    """The unpowered rise is complete: the probe unpowered_rise_k above its lowest of the check's window."""
    def risen(t, power, probe, cpu, room) -> bool:
        window = [r[2] for r in run.trace if t - CFG.unpowered_time_s <= r[0] <= t]
        return probe - min(window) >= CFG.unpowered_rise_k

    return run.first(risen)


HEATING = (15.0, -5.0)  # room and outdoor °C: full power for the whole run
IDLE = (22.0, 10.0)  # a warm room: the heater idles at its floor


@dataclass(frozen=True)
class Case:
    """One fault: where it goes, what the agent must call it, and from when its stated time counts."""

    device: str
    kind: str
    condition: str
    room: tuple[float, float]
    bound_s: float
    starts: Callable[[Run], float | None] | None = None  # when the condition exists (None: at the injection)


CASES = [
    Case("heater", "outlet_blocked", "surface_overtemperature", HEATING, SAMPLING_S, _panel_over),
    Case("heater", "fan_failure", "cpu_overtemperature", HEATING, SAFETY_PERIOD_S + 2 * STEP_S, _cpu_over),
    Case("surface", "detached", "no_response", HEATING, CFG.gain_time_s + SAMPLING_S, _probe_cold),
    Case("surface", "misplaced", "response_without_power", IDLE, SAMPLING_S, _probe_risen),
    Case("surface", "sentinel", "sensor_invalid", HEATING, CFG.invalid_fault_s + SAMPLING_S),
    Case("surface", "unplugged", "sensor_invalid", HEATING, CFG.invalid_fault_s + SAMPLING_S),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.device}-{c.kind}")
def test_fault_ends_at_the_power_floor_within_its_stated_time(tmp_path: Path, case: Case) -> None:
    idle = case.room == IDLE
    run = _run(tmp_path, TimedFault(WARM_UP_S, case.device, case.kind), *case.room,
               demand_after_s=60.0 if idle else None)
    assert run.min_power_before_w > (0 if idle else 400), "the room was being heated when the fault came"
    assert run.detect_s is not None and run.floor_s is not None, (run.conditions, run.trace[-1])
    starts_s = run.inject_s if case.starts is None else case.starts(run)
    assert starts_s is not None
    print(f"\n{case.device} {case.kind}: condition from +{starts_s - run.inject_s:.0f} s, safe state "
          f"+{run.detect_s - run.inject_s:.0f} s, board at {FLOOR_W:.0f} W or less "
          f"+{run.floor_s - run.inject_s:.0f} s "
          f"(bound {case.bound_s:.0f} s from the condition)")
    assert run.floor_s - starts_s <= case.bound_s
    if case.kind == "misplaced":  # and the rise took less than the check's window
        assert run.floor_s - run.inject_s <= CFG.unpowered_time_s
    assert run.first_condition == case.condition
    assert case.condition in run.conditions, run.conditions  # still held: it ends at the floor
    assert run.max_w_after_floor <= FLOOR_W, "power rose again after the safe state"
    assert run.demand_w > 400  # though the thermostat still asks for heat
    logged = [e for e in run.logs if e["event"] == "safe state" and e.get("condition") == case.condition]
    assert logged and logged[0]["reason"], run.logs[-5:]


@pytest.mark.parametrize("room", [HEATING, IDLE], ids=["heating", "idle-then-heat"])
def test_healthy_heater_with_the_same_timing_raises_nothing(tmp_path: Path,
                                                            room: tuple[float, float]) -> None:
    idle = room == IDLE  # idle, then a step to full power: the panel warms as the power comes on
    run = _run(tmp_path, None, *room, demand_after_s=60.0 if idle else None)
    assert run.detect_s is None and run.conditions == {}, run.conditions
    assert run.min_power_before_w < FLOOR_W if idle else run.min_power_before_w > 400
    assert min(row[1] for row in run.trace[-int(HOLD_S / STEP_S):]) > 400  # heating at the end


def test_dead_fans_latch_and_a_reset_proves_them_at_a_bounded_power(tmp_path: Path) -> None:
    """Both fans stop at full power. The issue: `reset-alarm cpu_overtemperature` put 500 W back with both
    fans dead and the CPUs reached 121 °C within 20 s. Now fan_failure latches beside it (0 RPM with power
    above the floor), so that reset leaves power at the floor; a fan_failure reset lets power rise only to
    fan_proof_w, until the fans are judged under power, then latches again."""
    weather = Weather.constant(HEATING[1])
    heater = SimulatedHeater(tmp_path, HeaterSpec(initial_air_c=HEATING[0]), weather, START, seed=3)
    suite = DeviceSuite(tmp_path, np.random.default_rng(4), noise=True)
    control = FaultControl(tmp_path, heater, suite, [TimedFault(WARM_UP_S, "heater", "fan_failure")])
    agent = Agent(parse_config(_config(tmp_path)), Clock(calendar_start=START, loop_start_s=0.0), Notifier({}))
    trace: list[tuple[float, float, float]] = []
    seen: dict[str, object] = {}
    safety = SafetyConfig()

    def on_step(state) -> None:
        control.step(state, weather)
        trace.append((state.t_s, state.power_w, max(heater.board.cpu_temp_c)))

    async def scenario() -> None:
        stop = asyncio.Event()
        sim = asyncio.create_task(heater.run(step_s=STEP_S, on_step=on_step), name="hw-sim")
        task = asyncio.create_task(agent.run(stop), name="agent")
        await asyncio.sleep(WARM_UP_S + 120.0)
        seen["latched"] = dict(agent.safety.conditions)
        await asyncio.sleep(300.0)  # cooled at the floor: the CPUs are far below their limit again
        try:  # first the fans: their proof cannot spin them up while another latch holds the floor
            agent.commands.reset_alarm("fan_failure", by="test")
        except Refused as exc:
            seen["fan_refused"] = str(exc)
        agent.commands.reset_alarm("cpu_overtemperature", by="test")  # raises Refused if refused
        seen["cpu_reset"] = "cpu_overtemperature" not in agent.safety.conditions
        seen["cpu_reset_at_s"] = heater.state.t_s
        await asyncio.sleep(120.0)
        agent.commands.reset_alarm("fan_failure", by="test")
        seen["fan_reset"] = "fan_failure" not in agent.safety.conditions
        seen["fan_reset_at_s"] = heater.state.t_s
        await asyncio.sleep(90.0)  # three control periods: the thermostat raises its demand, the fans are judged
        seen["after_proof"] = dict(agent.safety.conditions)
        stop.set()
        await asyncio.wait_for(task, 30)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)

    with capture_logs():
        run_virtual(scenario())
    assert {"fan_failure", "cpu_overtemperature"} <= set(seen["latched"]), seen["latched"]  # type: ignore[arg-type]
    assert "held there now by cpu_overtemperature" in str(seen.get("fan_refused")), seen.get("fan_refused")
    assert seen["cpu_reset"] is True and seen["fan_reset"] is True
    cpu_reset_s, fan_reset_s = float(seen["cpu_reset_at_s"]), float(seen["fan_reset_at_s"])  # type: ignore[arg-type]
    between = [row[1] for row in trace if cpu_reset_s + STEP_S < row[0] <= fan_reset_s]
    assert max(between) <= FLOOR_W, "a cpu_overtemperature reset put power back with dead fans"
    proof = [row for row in trace if row[0] > fan_reset_s + STEP_S]
    rose = [row for row in proof if row[1] > FLOOR_W]
    assert rose, "the proof never raised power: it proved nothing"
    assert max(row[1] for row in proof) <= safety.fan_proof_w + 60.0  # the ceiling, plus the board's idle
    rose_s = min(row[0] for row in rose)
    assert max(row[0] for row in rose) - rose_s <= safety.fan_grace_s + SAMPLING_S + STEP_S
    assert "fan_failure" in seen["after_proof"], seen["after_proof"]  # type: ignore[operator]
    assert trace[-1][1] <= FLOOR_W
    assert max(row[2] for row in proof) <= CPU_MAX_C  # at the proof's power the CPUs stay below their limit
