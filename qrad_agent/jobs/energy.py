"""Energy of each job: measured package energy (RAPL) or the mains meter, shared by a learned model.

Each interval (``JobEnergyAccountant.interval``) the agent gives the jobs' CPU seconds (per job, and on
which packages it may run), the energy each RAPL package counted (J, when the board has RAPL) and the
mains meter's energy (J, when a meter is configured). A job's joules are

    E_j = c_j · P_floor / cores_per_package + (its share of the dynamic energy)

where c_j is its CPU seconds on a package, ``P_floor`` the package's idle power (W) and the dynamic energy is
what was measured above the floors, shared in proportion to ``w_j · c_j``: ``w_j`` (W per busy core) is the
job's learned intensity. Jobs differ in intensity (a vectorised solver switches more capacitance per cycle
than one waiting on memory), so CPU time alone would misattribute; the model learns each job's ``w_j`` and
the floor by least squares over a sliding window of intervals:

    with RAPL, one row per package:   E_p   = P_floor · dt + Σ_j w_j · c_jp
    without, one row per interval:    E_mains = (P_platform + n_packages · P_floor) · dt + Σ_j w_j · c_j

ridge-regularised toward the pooled fit (one ``w`` for every job), so a job seen only together with others
keeps the common value rather than a wild one. Where a measurement exists the attribution is reconciled
with it (the measured dynamic energy is what is shared); where there is neither RAPL nor a meter the
model's own prediction is used. The residual, measured minus predicted, is reported per interval and
cumulated in `status` (never folded away): with RAPL it is the mains meter against RAPL plus the platform
overhead, without RAPL the mains meter against the model.

The platform overhead (PSU, memory, fans: ``platform_overhead_w``, W, from the config) and the floor of
idle cores are the heater's own, never billed to a job. Every joule still becomes heat in the room:
``heat_delivered_j`` counts all of it (mains meter, else RAPL + overhead, else the model).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qrad_agent.errors import ActuatorError
from qrad_agent.power.rapl import discover_zones, energy_delta_uj
from qrad_agent.power.sysfs import read_int

WINDOW_INTERVALS = 240
"""Intervals of history the model is fitted on (40 min at 10 s): long enough to see jobs start and stop."""
RIDGE = 1e-5
"""Weight of the pull toward the pooled fit, relative to the data's scale (dimensionless): small, so the data decide
wherever they can (benchmarks/job_energy.py: 1e-3 left up to 6 % error, 1e-5 under 0.1 %), while a job seen only
in a fixed ratio with another still gets the pooled value instead of an arbitrary split."""


@dataclass
class IntervalReport:
    """One interval: J per job, J measured (None: not measured), J predicted, residual J, method."""

    dt_s: float
    job_j: dict[str, float]
    measured_j: float | None
    predicted_j: float
    residual_j: float | None
    method: str


@dataclass
class _Row:
    dt_s: float
    cpu: dict[str, float]
    energy_j: float


@dataclass
class JobEnergyAccountant:
    """Per-job energy from CPU time, RAPL and/or the mains meter (module docstring: the method).

    ``n_packages``, ``cores_per_package``: the board; ``platform_overhead_w``: power outside the packages
    (W); ``idle_w``: the heater's electrical power with no job (W), the prior of the floor;
    ``w_per_core``: prior of a job's dynamic power per busy core (W), until the data says otherwise.
    """

    n_packages: int
    cores_per_package: int
    platform_overhead_w: float
    idle_w: float
    w_per_core: float
    window: int = WINDOW_INTERVALS
    job_j: dict[str, float] = field(default_factory=dict)
    job_cpu_s: dict[str, float] = field(default_factory=dict)
    heat_delivered_j: float = 0.0
    past_cpu_s: float = 0.0
    residual_j: float = 0.0
    measured_j: float = 0.0
    intervals: int = 0

    def __post_init__(self) -> None:
        if self.n_packages < 1 or self.cores_per_package < 1:
            raise ValueError("n_packages and cores_per_package must be >= 1")
        self.floor_w = max(0.0, (self.idle_w - self.platform_overhead_w) / self.n_packages)
        self.weights: dict[str, float] = {}
        self._rows: deque[_Row] = deque(maxlen=self.window * self.n_packages)
        self._mode: str | None = None

    # -- the model --

    def weight(self, job_id: str) -> float:
        """Learned dynamic power of the job per busy core, W (the prior until learned)."""
        return self.weights.get(job_id, self.w_per_core)

    def _fit(self, n_floors: float, overhead: bool) -> None:
        """Least squares on the window: floor (W per package) and each job's W per busy core; rows count
        ``n_floors`` package floors, and the platform overhead when ``overhead``."""
        rows = list(self._rows)
        if len(rows) < 3:
            return
        jobs = sorted({j for r in rows for j in r.cpu})
        dt = np.array([r.dt_s for r in rows])
        y = np.array([r.energy_j for r in rows])
        c = np.array([[r.cpu.get(j, 0.0) for j in jobs] for r in rows]) if jobs else np.zeros((len(rows), 0))
        offset = self.platform_overhead_w * dt if overhead else 0.0
        y = y - offset
        total = c.sum(axis=1) if jobs else np.zeros(len(rows))
        pooled, *_ = np.linalg.lstsq(np.column_stack([n_floors * dt, total]), y, rcond=None)
        floor_w, w0 = float(pooled[0]), float(pooled[1])
        if not jobs:
            self.floor_w = max(0.0, floor_w)
            return
        scale = float(np.sqrt((c ** 2).sum() / max(1, len(jobs)))) or 1.0
        ridge = np.sqrt(RIDGE) * scale
        a = np.vstack([np.column_stack([n_floors * dt, c]),
                       np.column_stack([np.zeros(len(jobs)), ridge * np.eye(len(jobs))])])
        b = np.concatenate([y, ridge * np.full(len(jobs), max(0.0, w0))])
        sol, *_ = np.linalg.lstsq(a, b, rcond=None)
        if not np.all(np.isfinite(sol)):
            return
        self.floor_w = max(0.0, float(sol[0]))
        for j, w in zip(jobs, sol[1:], strict=True):
            self.weights[j] = max(0.0, float(w))

    # -- one interval --

    def interval(self, dt_s: float, job_cpu_s: dict[str, float], job_packages: dict[str, tuple[int, ...]],
                 package_j: list[float] | None = None, mains_j: float | None = None) -> IntervalReport:
        """Account one interval of ``dt_s`` s.

        ``job_cpu_s``: CPU seconds each job used in it; ``job_packages``: the packages a job may run on
        (missing or empty: all); ``package_j``: energy each RAPL package counted (J), or None without RAPL;
        ``mains_j``: the mains meter's energy (J), or None. Raises ValueError for dt_s <= 0 or a package
        list of the wrong length; negative CPU seconds count as 0.
        """
        if dt_s <= 0:
            raise ValueError("dt_s must be > 0")
        if package_j is not None and len(package_j) != self.n_packages:
            raise ValueError(f"{len(package_j)} package energies for {self.n_packages} packages")
        cpu = {j: max(0.0, float(v)) for j, v in job_cpu_s.items()}
        for j, v in cpu.items():
            self.job_cpu_s[j] = self.job_cpu_s.get(j, 0.0) + v
        if package_j is not None:
            report = self._with_rapl(dt_s, cpu, job_packages, package_j, mains_j)
        else:
            report = self._without_rapl(dt_s, cpu, mains_j)
        for j, e in report.job_j.items():
            self.job_j[j] = self.job_j.get(j, 0.0) + e
        self.intervals += 1
        if report.residual_j is not None:
            self.residual_j += report.residual_j
        if report.measured_j is not None:
            self.measured_j += report.measured_j
        return report

    def _on_packages(self, cpu: dict[str, float], job_packages: dict[str, tuple[int, ...]]) -> list[dict[str, float]]:
        per_package: list[dict[str, float]] = [{} for _ in range(self.n_packages)]
        for j, seconds in cpu.items():
            packages = [p for p in job_packages.get(j, ()) if 0 <= p < self.n_packages] or list(range(self.n_packages))
            for p in packages:
                per_package[p][j] = per_package[p].get(j, 0.0) + seconds / len(packages)
        return per_package

    def _switch(self, mode: str) -> None:
        if self._mode != mode:  # rows of the other kind measure other things
            self._rows.clear()
            self._mode = mode

    def _share(self, dynamic_j: float, cpu: dict[str, float]) -> dict[str, float]:
        """``dynamic_j`` shared by w_j · c_j (by CPU time while every weight is 0)."""
        keys = {j: self.weight(j) * c for j, c in cpu.items()}
        total = sum(keys.values())
        if total <= 0:
            keys, total = dict(cpu), sum(cpu.values())
        return {j: dynamic_j * k / total for j, k in keys.items()} if total > 0 else {}

    def _with_rapl(self, dt_s: float, cpu: dict[str, float], job_packages: dict[str, tuple[int, ...]],
                   package_j: list[float], mains_j: float | None) -> IntervalReport:
        self._switch("rapl")
        per_package = self._on_packages(cpu, job_packages)
        for p in range(self.n_packages):
            self._rows.append(_Row(dt_s, per_package[p], max(0.0, package_j[p])))
        self._fit(1.0, overhead=False)
        job_j: dict[str, float] = {}
        predicted = 0.0
        for p, on_p in enumerate(per_package):
            floor_j = {j: c * self.floor_w / self.cores_per_package for j, c in on_p.items()}
            predicted += self.floor_w * dt_s + sum(self.weight(j) * c for j, c in on_p.items())
            dynamic = max(0.0, package_j[p] - self.floor_w * dt_s)
            for j, e in self._share(dynamic, on_p).items():
                job_j[j] = job_j.get(j, 0.0) + e + floor_j[j]
        rapl_total = sum(max(0.0, e) for e in package_j) + self.platform_overhead_w * dt_s
        self.heat_delivered_j += mains_j if mains_j is not None else rapl_total
        residual = None if mains_j is None else mains_j - rapl_total
        return IntervalReport(dt_s, job_j, sum(package_j), predicted, residual, "rapl")

    def _without_rapl(self, dt_s: float, cpu: dict[str, float], mains_j: float | None) -> IntervalReport:
        self._switch("mains" if mains_j is not None else "model")
        base_w = self.platform_overhead_w + self.n_packages * self.floor_w
        predicted = base_w * dt_s + sum(self.weight(j) * c for j, c in cpu.items())
        floor_j = {j: c * self.floor_w / self.cores_per_package for j, c in cpu.items()}
        if mains_j is None:
            job_j = {j: self.weight(j) * c + floor_j[j] for j, c in cpu.items()}
            self.heat_delivered_j += predicted
            return IntervalReport(dt_s, job_j, None, predicted, None, "model")
        self._rows.append(_Row(dt_s, cpu, max(0.0, mains_j)))
        self._fit(float(self.n_packages), overhead=True)
        base_w = self.platform_overhead_w + self.n_packages * self.floor_w
        predicted = base_w * dt_s + sum(self.weight(j) * c for j, c in cpu.items())
        floor_j = {j: c * self.floor_w / self.cores_per_package for j, c in cpu.items()}
        dynamic = max(0.0, mains_j - base_w * dt_s)
        job_j = {j: e + floor_j[j] for j, e in self._share(dynamic, cpu).items()}
        self.heat_delivered_j += mains_j
        return IntervalReport(dt_s, job_j, mains_j, predicted, mains_j - predicted, "mains")

    # -- results --

    def energy_wh(self, job_id: str) -> float:
        """Energy attributed to the job so far, Wh (0.0 for a job never seen)."""
        return self.job_j.get(job_id, 0.0) / 3600.0

    def forget(self, job_id: str) -> None:
        """Drop a finished job's totals (its weight stays in the window until it slides out)."""
        self.job_j.pop(job_id, None)
        self.past_cpu_s += self.job_cpu_s.pop(job_id, 0.0)

    def status(self) -> dict:
        """Plain JSON: method, heat delivered (kWh), compute per kWh (core-h/kWh), residual (Wh, and % of
        the measured energy), the learned floor and weights (W)."""
        heat_kwh = self.heat_delivered_j / 3.6e6
        core_h = (sum(self.job_cpu_s.values()) + self.past_cpu_s) / 3600.0
        return {"method": self._mode, "intervals": self.intervals, "heat_delivered_kwh": round(heat_kwh, 6),
                "compute_core_h": round(core_h, 6),
                "compute_core_h_per_kwh": round(core_h / heat_kwh, 4) if heat_kwh > 0 else None,
                "residual_wh": round(self.residual_j / 3600.0, 4),
                "residual_pct": round(100.0 * self.residual_j / self.measured_j, 3) if self.measured_j else None,
                "floor_w": round(self.floor_w, 3), "w_per_core": {j: round(w, 3) for j, w in self.weights.items()}}


# -- reading the inputs from sysfs --

_STAT_RE = re.compile(r"^usage_usec (\d+)$", re.MULTILINE)


def parse_cpu_list(text: str) -> set[int]:
    """CPU numbers of a kernel cpu list ("0-3,8,10-11"); ValueError if it does not parse."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if hi < lo or hi - lo > 4096:
            raise ValueError(f"bad cpu range {part!r}")
        cpus.update(range(lo, hi + 1))
    return cpus


class JobCpuReader:
    """CPU seconds and packages of every job cgroup (``job-<id>``) under the jobs' parent cgroup (v2).

    ``sample()`` returns (CPU seconds since the previous sample per job, packages per job). A job's
    packages come from its ``cpuset.cpus.effective`` and ``devices/system/cpu/cpuN/topology/
    physical_package_id``; unknown: empty (all packages). A counter that went down restarts from it.
    """

    def __init__(self, jobs_cgroup: Path, sysfs_root: Path) -> None:
        self.dir = Path(jobs_cgroup)
        self.sysfs_root = Path(sysfs_root)
        self._last: dict[str, float] = {}
        self._package_of: dict[int, int] = {}

    def _package(self, cpu: int) -> int | None:
        if cpu not in self._package_of:
            path = self.sysfs_root / "devices/system/cpu" / f"cpu{cpu}" / "topology/physical_package_id"
            try:
                self._package_of[cpu] = int(path.read_text().strip())
            except (OSError, ValueError):
                return None
        return self._package_of[cpu]

    def read(self) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
        """Cumulative CPU seconds and packages of each job cgroup now."""
        usage: dict[str, float] = {}
        packages: dict[str, tuple[int, ...]] = {}
        try:
            dirs = [d for d in self.dir.iterdir() if d.name.startswith("job-") and d.is_dir()]
        except OSError:
            return usage, packages
        for d in dirs:
            job_id = d.name[4:]
            try:
                m = _STAT_RE.search((d / "cpu.stat").read_text())
            except OSError:
                continue
            if m is None:
                continue
            usage[job_id] = int(m.group(1)) / 1e6
            try:
                cpus = parse_cpu_list((d / "cpuset.cpus.effective").read_text())
                found = {self._package(c) for c in cpus}
                packages[job_id] = tuple(sorted(p for p in found if p is not None)) if None not in found else ()
            except (OSError, ValueError):
                packages[job_id] = ()
        return usage, packages

    def sample(self) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
        """CPU seconds per job since the previous call, and each job's packages."""
        usage, packages = self.read()
        delta = {}
        for job_id, total in usage.items():
            last = self._last.get(job_id, 0.0)
            delta[job_id] = total - last if total >= last else total
        self._last = usage
        return delta, packages

    def take_final(self, job_id: str, final_cpu_s: float) -> float:
        """CPU seconds of a job not yet sampled when its cgroup went (its runner read ``final_cpu_s``)."""
        last = self._last.pop(job_id, 0.0)
        return max(0.0, final_cpu_s - last)


class PackageEnergyReader:
    """Energy each RAPL package counted between calls (J), across the counter's wrap.

    Raises ActuatorError when the board has no RAPL package zone (construct it only where RAPL exists)."""

    def __init__(self, sysfs_root: Path) -> None:
        self.zones = discover_zones(Path(sysfs_root))
        if not self.zones:
            raise ActuatorError("no RAPL package zone found")
        self._last: list[int] | None = None

    def sample(self) -> list[float] | None:
        """J per package since the previous call; None on the first call. Raises ActuatorError on a read."""
        counters = [read_int(z.path / "energy_uj") for z in self.zones]
        last, self._last = self._last, counters
        if last is None:
            return None
        return [energy_delta_uj(a, b, z.max_energy_range_uj) / 1e6 for a, b, z in zip(last, counters, self.zones)]
