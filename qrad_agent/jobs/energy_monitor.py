"""The agent's ``energy`` component: per-job energy each interval, into the job records and the state.

Every ``jobs.energy_interval_s`` (loop clock) it reads the jobs' CPU seconds from their cgroups, the RAPL
package counters (when the board has them) and the mains meter's cumulative kWh (the sensor hub's
``jobs.mains_energy_channel``, when configured and its reading is good), and gives them to the
`JobEnergyAccountant` (energy.py has the method). A running job's ``usage.energy_wh`` is updated each
interval; when a job ends the runner calls `on_job_end`, which adds the CPU seconds not yet sampled at the
job's last J per CPU second, so ``energy_wh`` is in every job result. Nothing here blocks: the reads are
a few small sysfs files.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from qrad_agent.errors import ActuatorError
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.carbon import CarbonAccountant
from qrad_agent.jobs.energy import (
    JobCpuReader,
    JobEnergyAccountant,
    PackageEnergyReader,
    PackageFrequencyReader,
)

if TYPE_CHECKING:
    from qrad_agent.config import PowerConfig
    from qrad_agent.jobs.runner import JobRunner

log = structlog.get_logger(component="jobs.energy")


def board_topology(sysfs_root: Path, cpus: int) -> tuple[int, int]:
    """(packages, cores per package) from ``devices/system/cpu/cpuN/topology/physical_package_id``;
    (1, ``cpus``) when the files are absent."""
    packages: dict[int, int] = {}
    for path in Path(sysfs_root).glob("devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
        try:
            pkg = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        packages[pkg] = packages.get(pkg, 0) + 1
    if not packages:
        return 1, max(1, cpus)
    return len(packages), max(packages.values())


class EnergyMonitor:
    """Samples the inputs of the accountant and writes each job's energy into its record: ``jobs`` (the
    runner whose records get ``energy_wh``), ``room`` (the room temperature and setpoint now, °C, NaN when
    unknown: the thermostat's), ``mains_kwh_reading`` (the latest good reading of the mains meter's energy
    channel, kWh, or None)."""

    def __init__(self, jobs_cfg: JobsConfig, power_cfg: PowerConfig, jobs: JobRunner,
                 room: Callable[[], tuple[float, float]],
                 mains_kwh_reading: Callable[[str], float | None]) -> None:
        self.jobs = jobs
        self.room = room
        self.mains_kwh_reading = mains_kwh_reading
        self.interval_s = jobs_cfg.energy_interval_s
        self.meter_channel = jobs_cfg.mains_energy_channel
        n_packages, cores = board_topology(power_cfg.sysfs_root, jobs_cfg.cpus)
        try:
            self.rapl: PackageEnergyReader | None = PackageEnergyReader(power_cfg.sysfs_root)
            n_packages = len(self.rapl.zones)
            cores = max(1, jobs_cfg.cpus // n_packages) if n_packages > 1 and cores == jobs_cfg.cpus else cores
        except ActuatorError:
            self.rapl = None
        w_per_core = max(0.0, power_cfg.max_w - power_cfg.idle_w) / max(1, jobs_cfg.cpus)
        self.accountant = JobEnergyAccountant(n_packages, cores, power_cfg.platform_overhead_w,
                                              power_cfg.idle_w, w_per_core)
        self.carbon = CarbonAccountant(jobs_cfg.grid_g_per_kwh, jobs_cfg.displaced_heating_g_per_kwh,
                                       jobs_cfg.comfort_band_k)
        self.cpu = JobCpuReader(jobs_cfg.cgroup, power_cfg.sysfs_root)
        self.freq = PackageFrequencyReader(power_cfg.sysfs_root, n_packages)
        self._last_kwh: float | None = None
        self._last_t: float | None = None

    def _mains_kwh(self) -> float | None:
        if self.meter_channel is None:
            return None
        return self.mains_kwh_reading(self.meter_channel)

    def sample(self, t_s: float) -> None:
        """One interval ending at loop time ``t_s``. Never raises for a bad input (logged, skipped)."""
        cpu, packages = self.cpu.sample()
        try:
            package_j = self.rapl.sample() if self.rapl is not None else None
        except ActuatorError as exc:
            log.error("RAPL energy read failed; per-job energy from the model", error=str(exc))
            self.rapl, package_j = None, None
        kwh = self._mains_kwh()
        mains_j = None
        if kwh is not None and self._last_kwh is not None and kwh >= self._last_kwh:
            mains_j = (kwh - self._last_kwh) * 3.6e6
        self._last_kwh = kwh if kwh is not None else self._last_kwh
        last_t, self._last_t = self._last_t, t_s
        if last_t is None or t_s <= last_t or (self.rapl is not None and package_j is None):
            return
        heat_before_j = self.accountant.heat_delivered_j
        try:
            report = self.accountant.interval(t_s - last_t, cpu, packages, package_j, mains_j, self.freq.sample())
        except ValueError as exc:
            log.error("energy interval skipped", error=str(exc))
            return
        pv_c, setpoint_c = self.room()
        self.carbon.interval(self.accountant.heat_delivered_j - heat_before_j, report.job_j, _finite(pv_c),
                             _finite(setpoint_c))
        for job_id in cpu:
            record = self.jobs.records.get(job_id)
            if record is not None:
                record.usage.energy_wh = round(self.accountant.energy_wh(job_id), 6)
                self._carbon_into(record)

    def _carbon_into(self, record: Any) -> None:
        facts = self.carbon.job(record.id)
        if facts is not None:
            record.usage.heat_reused_wh = round(facts["heat_reused_kwh"] * 1000.0, 6)
            record.usage.emitted_g = facts["emitted_g"]
            record.usage.avoided_g = facts["avoided_g"]

    def on_job_end(self, record: Any) -> None:
        """The runner read the job's final CPU seconds: add what was not sampled, set ``energy_wh``."""
        acc = self.accountant
        rest_s = self.cpu.take_final(record.id, record.usage.cpu_s)
        seen_s = acc.job_cpu_s.get(record.id, 0.0)
        per_s = acc.job_j.get(record.id, 0.0) / seen_s if seen_s > 0 else (
            acc.weight(record.id) + acc.floor_w / acc.cores_per_package)
        energy_j = acc.job_j.get(record.id, 0.0) + rest_s * per_s
        record.usage.energy_wh = round(energy_j / 3600.0, 6) if math.isfinite(energy_j) else 0.0
        self._carbon_into(record)
        acc.forget(record.id)
        self.carbon.forget(record.id)

    def status(self) -> dict:
        return {**self.accountant.status(), "carbon": self.carbon.status()}

    def state(self) -> dict:
        """Totals that survive a restart (J, CPU s)."""
        a = self.accountant
        return {"heat_delivered_j": a.heat_delivered_j, "residual_j": a.residual_j, "measured_j": a.measured_j,
                "compute_cpu_s": sum(a.job_cpu_s.values()) + a.past_cpu_s}

    def restore(self, saved: object) -> None:
        if not isinstance(saved, dict):
            return
        a = self.accountant
        try:
            a.heat_delivered_j = max(0.0, float(saved.get("heat_delivered_j", 0.0)))
            a.residual_j = float(saved.get("residual_j", 0.0))
            a.measured_j = max(0.0, float(saved.get("measured_j", 0.0)))
            a.past_cpu_s = max(0.0, float(saved.get("compute_cpu_s", 0.0)))
        except (TypeError, ValueError) as exc:
            log.warning("energy totals not restored", error=str(exc))

    async def run(self) -> None:
        """Until cancelled: one interval every ``interval_s`` s of loop time."""
        loop = asyncio.get_running_loop()
        while True:
            self.sample(loop.time())
            await asyncio.sleep(self.interval_s)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
