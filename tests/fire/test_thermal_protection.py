"""Thermal protection: each fault injected into a simple heater-surface model ends in a fault in time."""

from __future__ import annotations

import math

from qrad_agent.fire.config import ThermalProtectionConfig
from qrad_agent.fire.thermal_protection import ThermalProtection

CFG = ThermalProtectionConfig()
TAU_S, K_PER_W = 300.0, 0.1  # heater surface: 500 W -> +50 K above the room, 5 min time constant


def run(power_w, surface_fn=None, duration_s=3600.0, stale_after_s=None, cpu_c=50.0):
    """Step a first-order surface model; ``surface_fn(t, modelled)`` injects the fault. Returns
    {condition: time found}."""
    prot, surface, found = ThermalProtection(CFG), 20.0, {}
    for k in range(int(duration_s)):
        t = float(k)
        p = power_w(t)
        surface += (20.0 + K_PER_W * p - surface) * (1 - math.exp(-1.0 / TAU_S))
        reading = surface if surface_fn is None else surface_fn(t, surface)
        read_t = t if stale_after_s is None or t < stale_after_s else stale_after_s
        for cond in prot.update(t, p, reading, read_t, cpu_c, 20.0):
            found.setdefault(cond, t)
    return found


def test_healthy_heater_cycling_raises_nothing() -> None:
    assert run(lambda t: 500.0 if (t // 900) % 2 == 0 else 0.0) == {}


def test_surface_overtemperature_found_next_sample() -> None:
    found = run(lambda t: 500.0, lambda t, s: s + (60.0 if t >= 1000 else 0.0))
    assert 1000 <= found["surface_overtemperature"] <= 1001


def test_cpu_overtemperature() -> None:
    assert "cpu_overtemperature" in run(lambda t: 100.0, duration_s=5, cpu_c=101.0)


def test_power_applied_no_response_within_gain_time() -> None:
    found = run(lambda t: 0.0 if t < 100 else 500.0, lambda t, s: 20.0)  # sensor off the heater
    assert 100 + CFG.gain_time_s - 1 <= found["no_response"] <= 100 + CFG.gain_time_s + 1


def test_response_without_power_within_its_time() -> None:
    found = run(lambda t: 0.0, lambda t, s: 20.0 + max(0.0, t - 1000) * 0.02)  # +1.2 K/min, no power
    assert found["response_without_power"] - 1000 <= CFG.unpowered_time_s


def test_sensor_sentinel_and_stale_readings_are_faults_within_invalid_time() -> None:
    found = run(lambda t: 300.0, lambda t, s: 85.0 if t >= 500 else s)  # DS18B20 power-on value
    assert found["sensor_invalid"] - 500 <= CFG.invalid_fault_s
    found = run(lambda t: 300.0, stale_after_s=700.0)
    assert found["sensor_invalid"] - 700 <= CFG.stale_after_s + CFG.invalid_fault_s + 1


def test_faults_latch_until_reset() -> None:
    prot = ThermalProtection(CFG)
    assert prot.update(0.0, 0.0, 200.0, 0.0) and prot.faults
    assert prot.update(1.0, 0.0, 20.0, 1.0) == {} and "surface_overtemperature" in prot.faults
    prot.reset()
    assert prot.faults == {}


def test_panel_warming_as_power_comes_on_is_not_response_without_power() -> None:
    """Measured power is an average over the last control period (30 s), so it still shows idle while a fast
    panel (30 s time constant) warms from the step to full power: the commanded power says it is applied."""

    def step_to_full(with_commanded: bool) -> set[str]:
        prot, surface, found = ThermalProtection(CFG), 23.0, set()
        for k in range(1200):
            t = float(k)
            commanded = 50.0 if t < 600 else 500.0
            measured = 50.0 if t < 630 else 500.0  # the next control step measures the new level
            surface += (20.0 + 0.06 * commanded - surface) * (1 - math.exp(-1.0 / 30.0))
            given = commanded if with_commanded else None
            found |= set(prot.update(t, measured, surface, t, 50.0, 20.0, given))
        return found

    assert step_to_full(with_commanded=False) == {"response_without_power"}  # what measured power alone does
    assert step_to_full(with_commanded=True) == set()
