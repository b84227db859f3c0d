"""Per-job energy against hw-sim's ground truth: the accountant (jobs/energy.py) against the baseline that
shares the measured energy by CPU time alone.

``.venv/bin/python benchmarks/job_energy.py [--minutes 55] [--seed 0]``. The scenario is hw-sim's board
(4 packages x 4 cores). Six jobs of intensities 0.2 to 1.0 start and stop at random times on random
packages (two may share one), with an idle spell first. The run prints, for three set-ups, each job's error
against its ground truth and the largest |error|:
  - RAPL + mains meter (the accountant);
  - mains meter only (the accountant, learned model);
  - baseline: the mains energy above the configured idle power, shared by CPU seconds.
It also prints each set-up's residual (% of the measured energy). ``--freq-steps`` changes the P-state cap
every 10 minutes; ``--meter-noise 0.01`` adds 1 % Gaussian noise to each interval's mains energy (hw-sim's
model is exactly the accountant's form, so without noise both set-ups fit it almost perfectly; the noise
shows the sensitivity). No outside data is read.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
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
)

STEP_S = 10.0


def scenario(seed: int, minutes: float) -> list[SimJob]:
    """Six jobs that fit the board (cores per package respected), random times, intensities, packages."""
    rng = np.random.default_rng(seed)
    free = [4, 4, 4, 4]
    jobs = []
    for i, intensity in enumerate(np.linspace(0.2, 1.0, 6)):
        cores = int(rng.integers(1, 3))
        candidates = [p for p in range(4) if free[p] >= cores]
        package = int(rng.choice(candidates))
        free[package] -= cores
        start = float(rng.uniform(300, minutes * 30))
        end = float(rng.uniform(start + 600, minutes * 60))
        jobs.append(SimJob(f"j{i}", cores, round(float(intensity), 2), package, start, end))
    return jobs


FREQ_STEPS_KHZ = (2_400_000, 1_600_000, 2_000_000, 1_000_000)
"""With --freq-steps, every package's scaling_max_freq cycles through these every 10 minutes, as the power
manager would: a job's watts per busy core change with the frequency, which the linear model must follow."""


Result = tuple[dict[str, float], dict[str, float], dict[str, float], float | None]


def run(jobs: list[SimJob], rapl: bool, minutes: float, freq_steps: bool = False, noise: float = 0.0) -> Result:
    """(accountant Wh, baseline Wh, truth Wh, residual %) per job for one set-up."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = HeaterSpec(board=BoardSpec(rapl=rapl))
        heater = SimulatedHeater(root, spec, Weather.constant(5.0), datetime(2026, 1, 15))
        sim = SimulatedJobs(heater.board, jobs)
        meter = Sdm120Device(root / "dev/ttyMETER")
        b = spec.board
        acc = JobEnergyAccountant(b.n_packages, b.cores_per_package, b.platform_overhead_w, idle_w=50.0,
                                  w_per_core=25.0)
        cpu_reader = JobCpuReader(root / "fs/cgroup/qrad-jobs", root)
        freq_reader = PackageFrequencyReader(root, b.n_packages)
        rapl_reader = PackageEnergyReader(root) if rapl else None
        if rapl_reader:
            rapl_reader.sample()
        cpu_reader.sample()
        baseline: dict[str, float] = {}
        rng = np.random.default_rng(1)
        last_kwh = meter.energy_kwh
        t = 0.0
        while t < minutes * 60:
            if freq_steps and t % 600 == 0:
                khz = FREQ_STEPS_KHZ[int(t // 600) % len(FREQ_STEPS_KHZ)]
                for policy in (root / "devices/system/cpu/cpufreq").glob("policy*"):
                    (policy / "scaling_max_freq").write_text(f"{khz}\n")
            state = heater.step(STEP_S)
            meter.update(state.power_w, STEP_S)
            t += STEP_S
            kwh = struct.unpack(">f", struct.pack(">f", meter.energy_kwh))[0]  # the register's float32
            mains_j = (kwh - last_kwh) * 3.6e6 * (1.0 + noise * float(rng.standard_normal()))
            last_kwh = kwh
            cpu, packages = cpu_reader.sample()
            acc.interval(STEP_S, cpu, packages, rapl_reader.sample() if rapl_reader else None, mains_j,
                         freq_reader.sample())
            total_cpu = sum(cpu.values())
            above_idle = max(0.0, mains_j - 50.0 * STEP_S)
            for j, c in cpu.items():
                baseline[j] = baseline.get(j, 0.0) + (above_idle * c / total_cpu if total_cpu else 0.0)
        truth = sim.truth_wh()
        return ({j: acc.energy_wh(j) for j in truth}, {j: baseline.get(j, 0.0) / 3600 for j in truth}, truth,
                acc.status()["residual_pct"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=55.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--freq-steps", action="store_true", help="change the P-state cap every 10 min")
    parser.add_argument("--meter-noise", type=float, default=0.0, metavar="FRACTION",
                        help="relative Gaussian noise on each interval's mains energy (e.g. 0.01)")
    args = parser.parse_args()
    jobs = scenario(args.seed, args.minutes)
    with_rapl = run(jobs, True, args.minutes, args.freq_steps, args.meter_noise)
    meter_only = run(jobs, False, args.minutes, args.freq_steps, args.meter_noise)
    print(f"{'job':4} {'cores':>5} {'pkg':>3} {'intens.':>7} {'truth Wh':>9} | {'RAPL+meter':>10} "
          f"{'meter only':>10} {'baseline':>9}   (error vs truth)")
    worst = {"RAPL+meter": 0.0, "meter only": 0.0, "baseline": 0.0}
    for job in jobs:
        truth = with_rapl[2][job.id]
        errors = {"RAPL+meter": with_rapl[0][job.id] / truth - 1, "meter only": meter_only[0][job.id] / truth - 1,
                  "baseline": with_rapl[1][job.id] / truth - 1}
        for k, e in errors.items():
            worst[k] = max(worst[k], abs(e))
        print(f"{job.id:4} {job.cores:5d} {job.package:3d} {job.intensity:7.2f} {truth:9.2f} | "
              f"{errors['RAPL+meter']:+10.2%} {errors['meter only']:+10.2%} {errors['baseline']:+9.2%}")
    print(f"{'max |error|':>33} | {worst['RAPL+meter']:10.2%} {worst['meter only']:10.2%} {worst['baseline']:9.2%}")
    print(f"residual (meter vs RAPL+overhead / vs model): {with_rapl[3]}% / {meter_only[3]}% of measured energy")


if __name__ == "__main__":
    main()
