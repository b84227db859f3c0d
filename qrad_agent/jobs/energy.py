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
keeps the common value rather than a wild one. A job's watts per busy core scale with the package's
frequency, which the power manager moves all the time: ``w_j`` is learned as ``a_j · k_b``, a relative
intensity times an average job's W per busy core in 100 MHz frequency bucket b (alternating least squares,
`_fit`). The window's intervals are shared again after every fit: a job's intensity may only become clear
once the jobs it ran with have stopped, and its energy follows; an interval that leaves the window keeps
the share it had then. Where a measurement exists the attribution is reconciled
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

ALS_ROUNDS = 30
"""Rounds of the alternating least squares per fit (each round is two small lstsq solves)."""
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


Key = tuple[str, int]
"""(job id, frequency bucket): CPU seconds are kept apart by the frequency they ran at."""


def bucket(khz: float | None) -> int:
    """Frequency bucket of a package running at ``khz`` (100 MHz wide); 0 when the frequency is unknown."""
    return 0 if khz is None or not khz > 0 else max(1, round(khz / 100_000))


@dataclass
class _Row:
    dt_s: float
    cpu: dict[Key, float]
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
        self.intensity: dict[str, float] = {}  # a_j: the job's power per busy core relative to the average job
        self.k_w: dict[int, float] = {}  # k_b: an average job's W per busy core at frequency bucket b
        self._rows: deque[_Row] = deque()  # the window: fitted on, and shared again after each fit
        self._frozen_j: dict[str, float] = {}  # J of intervals that left the window (shared for good)
        self._closed: set[str] = set()  # jobs whose account was closed (forget)
        self._mode: str | None = None

    # -- the model --

    def _k(self, b: int) -> float:
        """W per busy core of an average job at bucket ``b`` (the nearest learned bucket, else the prior)."""
        if b in self.k_w:
            return self.k_w[b]
        if not self.k_w:
            return self.w_per_core
        nearest = min(self.k_w, key=lambda known: abs(known - b))
        return self.k_w[nearest]

    def weight(self, job_id: str, b: int = 0) -> float:
        """The job's learned dynamic power per busy core at frequency bucket ``b``, W (prior until learned)."""
        return self.intensity.get(job_id, 1.0) * self._k(b)

    def _fit(self, n_floors: float, overhead: bool) -> None:
        """Alternating least squares on the window (rows count ``n_floors`` package floors, and the platform
        overhead when ``overhead``): E = floor·dt + Σ_(j,b) a_j · k_b · c_jb is bilinear in each job's relative
        intensity a_j and an average job's W per busy core k_b at frequency bucket b. Given the a_j, the floor
        and the k_b are linear; given the k_b, the floor and the a_j (ridge-pulled toward 1). A few rounds,
        then the a_j are normalised to a CPU-weighted mean of 1 (the scale lives in k_b)."""
        rows = list(self._rows)
        if len(rows) < 3:
            return
        dt = np.array([r.dt_s for r in rows])
        y = np.array([r.energy_j for r in rows]) - (self.platform_overhead_w * dt if overhead else 0.0)
        buckets = sorted({b for r in rows for (_, b) in r.cpu})
        jobs = sorted({j for r in rows for (j, _) in r.cpu})
        if not jobs:
            sol, *_ = np.linalg.lstsq((n_floors * dt)[:, None], y, rcond=None)
            self.floor_w = max(0.0, float(sol[0])) if np.isfinite(sol[0]) else self.floor_w
            return
        # c[r, j, b]: CPU seconds of job j at bucket b in row r
        c = np.zeros((len(rows), len(jobs), len(buckets)))
        jix, bix = {j: i for i, j in enumerate(jobs)}, {b: i for i, b in enumerate(buckets)}
        for r, row in enumerate(rows):
            for (j, b), v in row.cpu.items():
                c[r, jix[j], bix[b]] += v
        a = np.array([self.intensity.get(j, 1.0) for j in jobs])
        k = np.array([self._k(b) for b in buckets])
        seen_b = c.sum(axis=(0, 1)) > 0
        cpu_per_job = c.sum(axis=(0, 2))
        for _ in range(ALS_ROUNDS):
            x_b = np.einsum("rjb,j->rb", c, a)
            sol, *_ = np.linalg.lstsq(np.column_stack([n_floors * dt, x_b]), y, rcond=None)
            if not np.all(np.isfinite(sol)):
                return
            k = np.where(seen_b, np.maximum(0.0, sol[1:]), k)
            x_j = np.einsum("rjb,b->rj", c, k)
            scale = float(np.sqrt((x_j ** 2).sum() / len(jobs))) or 1.0
            ridge = np.sqrt(RIDGE) * scale
            a2 = np.vstack([np.column_stack([n_floors * dt, x_j]),
                            np.column_stack([np.zeros(len(jobs)), ridge * np.eye(len(jobs))])])
            sol, *_ = np.linalg.lstsq(a2, np.concatenate([y, np.full(len(jobs), ridge)]), rcond=None)
            if not np.all(np.isfinite(sol)):
                return
            a = np.maximum(0.0, sol[1:])
            mean = float((a * cpu_per_job).sum() / cpu_per_job.sum()) if cpu_per_job.sum() > 0 else 1.0
            if mean > 0:
                a, k = a / mean, k * mean
        self.floor_w = max(0.0, float(sol[0]))
        for b, kb, seen in zip(buckets, k, seen_b, strict=True):
            if seen:
                self.k_w[b] = float(kb)
        for j, aj in zip(jobs, a, strict=True):
            self.intensity[j] = float(aj)

    # -- one interval --

    def interval(self, dt_s: float, job_cpu_s: dict[str, float], job_packages: dict[str, tuple[int, ...]],
                 package_j: list[float] | None = None, mains_j: float | None = None,
                 package_khz: list[float | None] | None = None) -> IntervalReport:
        """Account one interval of ``dt_s`` s.

        ``job_cpu_s``: CPU seconds each job used in it; ``job_packages``: the packages a job may run on
        (missing or empty: all); ``package_j``: energy each RAPL package counted (J), or None without RAPL;
        ``mains_j``: the mains meter's energy (J), or None; ``package_khz``: each package's frequency (kHz),
        or None (unknown). Raises ValueError for dt_s <= 0 or a package list of the wrong length; negative
        CPU seconds count as 0.
        """
        if dt_s <= 0:
            raise ValueError("dt_s must be > 0")
        for values in (package_j, package_khz):
            if values is not None and len(values) != self.n_packages:
                raise ValueError(f"{len(values)} package values for {self.n_packages} packages")
        cpu = {j: max(0.0, float(v)) for j, v in job_cpu_s.items()}
        for j, v in cpu.items():
            self.job_cpu_s[j] = self.job_cpu_s.get(j, 0.0) + v
        buckets = [bucket(f) for f in package_khz] if package_khz is not None else [0] * self.n_packages
        per_package = self._on_packages(cpu, job_packages, buckets)
        if package_j is not None:
            report = self._with_rapl(dt_s, per_package, package_j, mains_j)
        else:
            merged: dict[Key, float] = {}
            for on_p in per_package:
                for key, c in on_p.items():
                    merged[key] = merged.get(key, 0.0) + c
            report = self._without_rapl(dt_s, merged, mains_j)
        if report.method == "model":  # nothing measured: the model's figures are final
            for j, e in report.job_j.items():
                self._frozen_j[j] = self._frozen_j.get(j, 0.0) + e
        self._reshare()
        self.intervals += 1
        if report.residual_j is not None:
            self.residual_j += report.residual_j
        if report.measured_j is not None:
            self.measured_j += report.measured_j
        return report

    def _on_packages(self, cpu: dict[str, float], job_packages: dict[str, tuple[int, ...]],
                     buckets: list[int]) -> list[dict[Key, float]]:
        per_package: list[dict[Key, float]] = [{} for _ in range(self.n_packages)]
        for j, seconds in cpu.items():
            packages = [p for p in job_packages.get(j, ()) if 0 <= p < self.n_packages] or list(range(self.n_packages))
            for p in packages:
                key = (j, buckets[p])
                per_package[p][key] = per_package[p].get(key, 0.0) + seconds / len(packages)
        return per_package

    def _switch(self, mode: str) -> None:
        if self._mode != mode:  # rows of the other kind measure other things
            while self._rows:
                self._freeze(self._rows.popleft())
            self._mode = mode

    def _append(self, row: _Row) -> None:
        self._rows.append(row)
        while len(self._rows) > self.window * (self.n_packages if self._mode == "rapl" else 1):
            self._freeze(self._rows.popleft())

    def _attribute(self, row: _Row) -> dict[str, float]:
        """A measured row's energy shared with the current model: floors by CPU time, the rest by the
        modelled dynamic energy (the platform overhead first, for a mains row)."""
        base_w = self.floor_w + (self.platform_overhead_w + (self.n_packages - 1) * self.floor_w
                                 if self._mode == "mains" else 0.0)
        floors = self._floors(row.cpu)
        shares = self._share(max(0.0, row.energy_j - base_w * row.dt_s), row.cpu)
        return {j: e + floors[j] for j, e in shares.items()}

    def _freeze(self, row: _Row) -> None:
        for j, e in self._attribute(row).items():
            if j not in self._closed:
                self._frozen_j[j] = self._frozen_j.get(j, 0.0) + e

    def _reshare(self) -> None:
        """Each job's energy: the frozen intervals plus the window's, shared again with the model as it is
        now (a job's intensity may only become clear once the jobs it ran with have stopped)."""
        totals = dict(self._frozen_j)
        for row in self._rows:
            for j, e in self._attribute(row).items():
                totals[j] = totals.get(j, 0.0) + e
        self.job_j = {j: e for j, e in totals.items() if j not in self._closed}
        present = {j for row in self._rows for (j, _) in row.cpu}
        self._closed &= present  # a closed job's rows have all left: nothing more to keep out
        self.intensity = {j: a for j, a in self.intensity.items() if j in present}

    def _predicted(self, cpu: dict[Key, float]) -> dict[str, float]:
        """Each job's modelled dynamic energy, J."""
        out: dict[str, float] = {}
        for (j, b), c in cpu.items():
            out[j] = out.get(j, 0.0) + self.weight(j, b) * c
        return out

    def _floors(self, cpu: dict[Key, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for (j, _), c in cpu.items():
            out[j] = out.get(j, 0.0) + c * self.floor_w / self.cores_per_package
        return out

    def _share(self, dynamic_j: float, cpu: dict[Key, float]) -> dict[str, float]:
        """``dynamic_j`` shared by the modelled dynamic energy (by CPU time while the model says 0)."""
        keys = self._predicted(cpu)
        total = sum(keys.values())
        if total <= 0:
            keys = {}
            for (j, _), c in cpu.items():
                keys[j] = keys.get(j, 0.0) + c
            total = sum(keys.values())
        return {j: dynamic_j * k / total for j, k in keys.items()} if total > 0 else {}

    def _with_rapl(self, dt_s: float, per_package: list[dict[Key, float]], package_j: list[float],
                   mains_j: float | None) -> IntervalReport:
        self._switch("rapl")
        for p in range(self.n_packages):
            self._append(_Row(dt_s, per_package[p], max(0.0, package_j[p])))
        self._fit(1.0, overhead=False)
        job_j: dict[str, float] = {}
        predicted = 0.0
        for p, on_p in enumerate(per_package):
            predicted += self.floor_w * dt_s + sum(self._predicted(on_p).values())
            dynamic = max(0.0, package_j[p] - self.floor_w * dt_s)
            floors = self._floors(on_p)
            for j, e in self._share(dynamic, on_p).items():
                job_j[j] = job_j.get(j, 0.0) + e + floors[j]
        rapl_total = sum(max(0.0, e) for e in package_j) + self.platform_overhead_w * dt_s
        self.heat_delivered_j += mains_j if mains_j is not None else rapl_total
        residual = None if mains_j is None else mains_j - rapl_total
        return IntervalReport(dt_s, job_j, sum(package_j), predicted, residual, "rapl")

    def _without_rapl(self, dt_s: float, cpu: dict[Key, float], mains_j: float | None) -> IntervalReport:
        self._switch("mains" if mains_j is not None else "model")
        if mains_j is not None:
            self._append(_Row(dt_s, cpu, max(0.0, mains_j)))
            self._fit(float(self.n_packages), overhead=True)
        base_w = self.platform_overhead_w + self.n_packages * self.floor_w
        modelled = self._predicted(cpu)
        predicted = base_w * dt_s + sum(modelled.values())
        floors = self._floors(cpu)
        if mains_j is None:
            job_j = {j: modelled[j] + floors[j] for j in modelled}
            self.heat_delivered_j += predicted
            return IntervalReport(dt_s, job_j, None, predicted, None, "model")
        dynamic = max(0.0, mains_j - base_w * dt_s)
        job_j = {j: e + floors[j] for j, e in self._share(dynamic, cpu).items()}
        self.heat_delivered_j += mains_j
        return IntervalReport(dt_s, job_j, mains_j, predicted, mains_j - predicted, "mains")

    # -- results --

    def energy_wh(self, job_id: str) -> float:
        """Energy attributed to the job so far, Wh (0.0 for a job never seen)."""
        return self.job_j.get(job_id, 0.0) / 3600.0

    def forget(self, job_id: str) -> None:
        """Drop a finished job's totals (its weight stays in the window until it slides out)."""
        self.job_j.pop(job_id, None)
        self._frozen_j.pop(job_id, None)
        self._closed.add(job_id)
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
                "floor_w": round(self.floor_w, 3),
                "w_per_core_by_mhz": {b * 100: round(k, 3) for b, k in sorted(self.k_w.items())},
                "relative_intensity": {j: round(a, 3) for j, a in self.intensity.items()}}


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


class PackageFrequencyReader:
    """Each package's mean current frequency (kHz) from ``devices/system/cpu/cpuN/cpufreq/scaling_cur_freq``
    and ``cpuN/topology/physical_package_id``; None for a package whose CPUs show no frequency."""

    def __init__(self, sysfs_root: Path, n_packages: int) -> None:
        self.n_packages = n_packages
        self._cpus: list[list[Path]] = [[] for _ in range(n_packages)]
        for topo in Path(sysfs_root).glob("devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
            try:
                pkg = int(topo.read_text().strip())
            except (OSError, ValueError):
                continue
            if 0 <= pkg < n_packages:
                self._cpus[pkg].append(topo.parent.parent / "cpufreq" / "scaling_cur_freq")

    def sample(self) -> list[float | None]:
        out: list[float | None] = []
        for paths in self._cpus:
            values = []
            for path in paths:
                try:
                    values.append(int(path.read_text().strip()))
                except (OSError, ValueError):
                    continue
            out.append(sum(values) / len(values) if values else None)
        return out
