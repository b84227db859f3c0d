"""Per-job energy on hw-sim: jobs of different intensity, with RAPL and the mains meter, and without RAPL.

The board is hw-sim's (4 packages x 4 cores, real sysfs files); the jobs are `SimulatedJobs` with a
ground truth per job; the mains meter is hw-sim's SDM120 model (its energy register is a float32 kWh, as
the driver reads it). The agent side reads only the sysfs files and the meter's kWh.
"""

from __future__ import annotations

import struct
from datetime import datetime
from pathlib import Path

import pytest
from qrad_hwsim.board import BoardSpec
from qrad_hwsim.devices.sdm120 import Sdm120Device
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.job_energy import SimJob, SimulatedJobs
from qrad_hwsim.weather import Weather

from qrad_agent.jobs.energy import (
    JobCpuReader,
    JobEnergyAccountant,
    PackageEnergyReader,
    PackageFrequencyReader,
    parse_cpu_list,
)

STEP_S = 10.0
FREQS_KHZ = (2_400_000, 1_600_000, 2_000_000, 1_000_000)
JOBS = [  # idle for the first 300 s; B and C share package 1 with different intensities
    SimJob("A", cores=4, intensity=1.0, package=0, start_s=300, end_s=2100),
    SimJob("B", cores=2, intensity=0.35, package=1, start_s=600, end_s=2700),
    SimJob("C", cores=2, intensity=0.8, package=1, start_s=900, end_s=2300),
    SimJob("D", cores=3, intensity=0.6, package=2, start_s=1200, end_s=3000),
    SimJob("E", cores=1, intensity=0.5, package=3, start_s=1500, end_s=2500),
]


def _float32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def run(root: Path, rapl: bool, duration_s: float = 3300.0):
    spec = HeaterSpec(board=BoardSpec(rapl=rapl))
    heater = SimulatedHeater(root, spec, Weather.constant(5.0), datetime(2026, 1, 15))
    jobs = SimulatedJobs(heater.board, JOBS)
    meter = Sdm120Device(root / "dev/ttyMETER")
    b = spec.board
    acc = JobEnergyAccountant(b.n_packages, b.cores_per_package, platform_overhead_w=b.platform_overhead_w,
                              idle_w=40.0, w_per_core=20.0)  # priors off on purpose: the data must win
    cpu_reader = JobCpuReader(root / "fs/cgroup/qrad-jobs", root)
    freq_reader = PackageFrequencyReader(root, b.n_packages)
    rapl_reader = PackageEnergyReader(root) if rapl else None
    if rapl_reader is not None:
        rapl_reader.sample()
    cpu_reader.sample()
    last_kwh = _float32(meter.energy_kwh)
    residuals = []
    t = 0.0
    while t < duration_s:
        if t % 600 == 0:  # the power manager moves the P-state cap: watts per busy core change with it
            for policy in (root / "devices/system/cpu/cpufreq").glob("policy*"):
                (policy / "scaling_max_freq").write_text(f"{FREQS_KHZ[int(t // 600) % len(FREQS_KHZ)]}\n")
        state = heater.step(STEP_S)
        meter.update(state.power_w, STEP_S)
        t += STEP_S
        kwh = _float32(meter.energy_kwh)
        cpu, packages = cpu_reader.sample()
        report = acc.interval(STEP_S, cpu, packages, rapl_reader.sample() if rapl_reader else None,
                              (kwh - last_kwh) * 3.6e6, freq_reader.sample())
        last_kwh = kwh
        residuals.append(report.residual_j)
    return acc, jobs, residuals


@pytest.mark.parametrize("rapl", [True, False], ids=["rapl+meter", "meter only"])
def test_each_job_within_5_percent_of_ground_truth(tmp_path: Path, rapl: bool) -> None:
    acc, jobs, residuals = run(tmp_path, rapl)
    truth = jobs.truth_wh()
    errors = {j: acc.energy_wh(j) / truth[j] - 1.0 for j in truth}
    print("\nmethod", acc.status()["method"], {j: f"{acc.energy_wh(j):.2f} Wh vs {truth[j]:.2f} Wh ({e:+.2%})"
                                             for j, e in errors.items()})
    assert all(abs(e) < 0.05 for e in errors.values()), errors
    # intensities differ, so CPU time alone would be wrong by far more than 5 %: B and C shared package 1
    per_cpu = {j: truth[j] / jobs.cpu_s[j] for j in truth}
    assert per_cpu["C"] > 1.5 * per_cpu["B"]
    status = acc.status()
    assert status["method"] == ("rapl" if rapl else "mains")
    assert all(r is not None for r in residuals)  # reported every interval, not hidden
    assert status["residual_pct"] is not None
    assert status["heat_delivered_kwh"] > 0 and status["compute_core_h_per_kwh"] > 0


def test_rapl_residual_is_the_platform_overhead_error(tmp_path: Path) -> None:
    """With RAPL, the residual is the mains meter against RAPL + the configured overhead: a wrong overhead
    in the config shows up in it, at its size, instead of vanishing into the jobs."""
    acc, _, _ = run(tmp_path, rapl=True, duration_s=600.0)
    assert abs(acc.status()["residual_wh"]) < 0.05  # overhead right (30 W): nothing left over
    acc2 = JobEnergyAccountant(4, 4, platform_overhead_w=20.0, idle_w=50.0, w_per_core=25.0)
    for _ in range(6):
        report = acc2.interval(10.0, {"x": 40.0}, {"x": (0,)}, [300.0, 50.0, 50.0, 50.0], mains_j=750.0)
        assert report.residual_j == pytest.approx(750.0 - (450.0 + 200.0))


def test_model_only_without_rapl_or_meter() -> None:
    acc = JobEnergyAccountant(2, 4, platform_overhead_w=30.0, idle_w=50.0, w_per_core=25.0)
    report = acc.interval(10.0, {"a": 20.0}, {}, None, None)
    assert report.method == "model" and report.measured_j is None and report.residual_j is None
    assert report.job_j["a"] == pytest.approx(20.0 * 25.0 + 20.0 * 10.0 / 4)


def test_hostile_inputs() -> None:
    acc = JobEnergyAccountant(2, 4, platform_overhead_w=30.0, idle_w=50.0, w_per_core=25.0)
    with pytest.raises(ValueError):
        acc.interval(0.0, {}, {}, None, None)
    with pytest.raises(ValueError):
        acc.interval(1.0, {}, {}, [1.0], None)
    report = acc.interval(1.0, {"a": -5.0}, {"a": (7,)}, [10.0, 10.0], None)  # negative CPU, unknown package
    assert report.job_j.get("a", 0.0) == 0.0
    assert acc.energy_wh("never") == 0.0
    assert parse_cpu_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    for bad in ("3-1", "x", "0-99999"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_reader_handles_missing_and_garbage(tmp_path: Path) -> None:
    cg = tmp_path / "qrad-jobs"
    (cg / "job-ok").mkdir(parents=True)
    (cg / "job-ok" / "cpu.stat").write_text("usage_usec 2000000\n")
    (cg / "job-bad").mkdir()
    (cg / "job-bad" / "cpu.stat").write_text("garbage")
    (cg / "job-ok" / "cpuset.cpus.effective").write_text("0-1\n")  # no topology files: all packages
    reader = JobCpuReader(cg, tmp_path)
    cpu, packages = reader.sample()
    assert cpu == {"ok": 2.0} and packages == {"ok": ()}
    (cg / "job-ok" / "cpu.stat").write_text("usage_usec 3500000\n")
    assert reader.sample()[0] == {"ok": 1.5}
    assert reader.take_final("ok", 4.0) == pytest.approx(0.5)
    assert JobCpuReader(tmp_path / "absent", tmp_path).sample() == ({}, {})
