"""Carbon facts on hw-sim: a heater running jobs flat out warms its room past the setpoint band; only the heat
delivered while the room needed it counts as reused and avoids emissions."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.job_energy import SimJob, SimulatedJobs
from qrad_hwsim.weather import Weather

from qrad_agent.jobs.carbon import CarbonAccountant
from qrad_agent.jobs.energy import JobCpuReader, JobEnergyAccountant, PackageEnergyReader

SETPOINT_C = 20.0
STEP_S = 30.0


def test_reused_heat_stops_counting_above_the_setpoint_band(tmp_path: Path) -> None:
    heater = SimulatedHeater(tmp_path, HeaterSpec(initial_air_c=19.0), Weather.constant(12.0), datetime(2026, 1, 15))
    jobs = SimulatedJobs(heater.board, [SimJob("hot", 4, 1.0, 0), SimJob("cool", 4, 0.3, 1),
                                         SimJob("fill2", 4, 1.0, 2), SimJob("fill3", 4, 1.0, 3)])
    acc = JobEnergyAccountant(4, 4, 30.0, 50.0, 25.0)
    carbon = CarbonAccountant(grid_g_per_kwh=50.0, displaced_g_per_kwh=200.0, comfort_band_k=0.5)
    cpu, rapl = JobCpuReader(tmp_path / "fs/cgroup/qrad-jobs", tmp_path), PackageEnergyReader(tmp_path)
    cpu.sample()
    rapl.sample()
    reused_j = total_j = 0.0
    flags = []
    for _ in range(int(6 * 3600 / STEP_S)):
        state = heater.step(STEP_S)
        before = acc.heat_delivered_j
        report = acc.interval(STEP_S, *cpu.sample(), rapl.sample())
        delivered = acc.heat_delivered_j - before
        needed = carbon.interval(delivered, report.job_j, state.sensor_c, SETPOINT_C, wall_s=0.0)
        assert needed == (state.sensor_c <= SETPOINT_C + 0.5)
        flags.append(needed)
        total_j += delivered
        reused_j += delivered if needed else 0.0
    assert flags[0] and not flags[-1], "the room must start cold and end above the band"
    (day,) = carbon.status()["days"].values()
    assert day["energy_kwh"] == pytest.approx(total_j / 3.6e6, rel=1e-4)
    assert day["heat_reused_kwh"] == pytest.approx(reused_j / 3.6e6, rel=1e-4)
    assert 0 < day["heat_reused_kwh"] < day["energy_kwh"]
    assert day["emitted_g"] == pytest.approx(50.0 * day["energy_kwh"], rel=1e-4)
    assert day["avoided_g"] == pytest.approx(200.0 * day["heat_reused_kwh"], rel=1e-4)
    assert day["net_g"] == pytest.approx(day["emitted_g"] - day["avoided_g"], abs=1e-2)
    hot, cool = carbon.job("hot"), carbon.job("cool")
    assert hot is not None and cool is not None
    assert hot["energy_kwh"] == pytest.approx(acc.energy_wh("hot") / 1000.0, rel=1e-4)
    assert hot["energy_kwh"] > 2 * cool["energy_kwh"]  # same CPU time, different intensity
    for facts in (hot, cool):  # the same reused share for every job of an interval
        assert facts["heat_reused_kwh"] / facts["energy_kwh"] == pytest.approx(
            day["heat_reused_kwh"] / day["energy_kwh"], rel=0.05)
    truth = jobs.truth_wh()
    assert hot["energy_kwh"] * 1000 == pytest.approx(truth["hot"], rel=0.05)


def test_unknown_room_or_intensity_and_hostile_values() -> None:
    carbon = CarbonAccountant(grid_g_per_kwh=None)
    assert carbon.interval(3.6e6, {"a": 3.6e6}, 19.0, 20.0) is True
    assert carbon.job("a") is None and carbon.status()["days"] == {}  # no intensity yet: nothing counted
    carbon.set_intensity(100.0, "platform")
    assert carbon.interval(3.6e6, {"a": 3.6e6}, None, 20.0) is False  # room unknown: not counted as reused
    assert carbon.interval(3.6e6, {"a": 3.6e6}, math.nan, 20.0) is False
    facts = carbon.job("a")
    assert facts == {"energy_kwh": 2.0, "heat_reused_kwh": 0.0, "emitted_g": 200.0, "avoided_g": 0.0,
                     "net_g": 200.0}
    for bad in (-1.0, math.inf, math.nan, 1e6):
        with pytest.raises(ValueError):
            carbon.set_intensity(bad, "platform")
    assert carbon.status()["source"] == "platform" and carbon.grid_g_per_kwh == 100.0
