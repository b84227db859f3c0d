"""Jobs of different intensity on the simulated board, and the energy each one truly used (ground truth).

The board model (board.py) normally treats the jobs as one uniform load. Real jobs differ: a vectorised
solver switches more capacitance per cycle than a job waiting on memory, so at the same frequency one
busy core-second costs it more joules. `SimulatedJobs` stands in for the board's jobs cgroup with a list
of `SimJob`: each runs on ``cores`` cores of one package from ``start_s`` to ``end_s`` (simulated seconds)
with an ``intensity`` (0..1): the fraction of a fully loaded core's dynamic power it draws. Per package:

    P_pkg = P_idle + P_dyn(f) · Σ_j (cores_j · s · intensity_j) / cores_per_package     (capped at a full package)

where ``s`` (0..1) is the share of the demanded CPU the parent quota (``qrad-jobs/cpu.max``) lets the jobs
have, the same for every job. The ground truth of job j (joules, ``truth_j``) is its dynamic energy plus the
package floor shared by CPU time over the package's cores:

    dE_j = dt · cores_j · s · (intensity_j · P_dyn(f) / cores_per_package + P_idle / cores_per_package)

so the floor of idle cores and the platform overhead stay the heater's own. The simulator publishes what
the kernel would: per job ``qrad-jobs/job-<id>/cpu.stat`` (usage_usec) and ``cpuset.cpus.effective`` (the
package's CPUs), the parent's ``cpu.stat``, and ``devices/system/cpu/cpuN/topology/physical_package_id``.
A job's directory stays after it ends (the agent's runner removes it after reading its usage).
"""

from __future__ import annotations

from dataclasses import dataclass

from .board import Board
from .cgroup import DEFAULT_PERIOD_US, parse_cpu_max
from .sysfs_io import publish_text, read_text, write_files


@dataclass(frozen=True)
class SimJob:
    """One simulated job: id, cores on ``package``, intensity (0..1), start and end (simulated s)."""

    id: str
    cores: int
    intensity: float
    package: int
    start_s: float = 0.0
    end_s: float = float("inf")

    def __post_init__(self) -> None:
        if not 0.0 <= self.intensity <= 1.0:
            raise ValueError(f"job {self.id}: intensity must be within 0..1, not {self.intensity}")
        if self.cores < 1 or self.end_s <= self.start_s:
            raise ValueError(f"job {self.id}: needs >= 1 core and end_s > start_s")


class SimulatedJobs:
    """The jobs' cgroup of a board (v2 layout) with per-job CPU accounting and ground-truth energy."""

    def __init__(self, board: Board, jobs: list[SimJob]) -> None:
        spec = board.spec
        if spec.cgroup != "v2":
            raise ValueError("SimulatedJobs publishes a cgroup v2 tree: the board needs cgroup='v2'")
        for p in range(spec.n_packages):
            cores = sum(j.cores for j in jobs if j.package == p)
            if cores > spec.cores_per_package:
                raise ValueError(f"package {p}: {cores} job cores on {spec.cores_per_package} cores")
        if any(not 0 <= j.package < spec.n_packages for j in jobs) or len({j.id for j in jobs}) != len(jobs):
            raise ValueError("job packages must exist and job ids be unique")
        self.board = board
        self.spec = spec
        self.jobs = list(jobs)
        self.dir = board.root / "fs/cgroup/qrad-jobs"
        self.t_s = 0.0
        self.share = 1.0
        self.truth_j = {j.id: 0.0 for j in jobs}
        self.cpu_s = {j.id: 0.0 for j in jobs}
        self._usage_s = 0.0
        self._quota_us: int | None = None
        self._period_us = DEFAULT_PERIOD_US
        n = spec.cores_per_package
        for cpu in range(spec.n_cores_total):
            write_files(board.root / "devices/system/cpu" / f"cpu{cpu}" / "topology",
                        {"physical_package_id": cpu // n})
        board.cgroup = self  # type: ignore[assignment]
        board.package_loads = self.package_loads  # type: ignore[attr-defined]

    def running(self) -> list[SimJob]:
        """The jobs running at the current simulated time."""
        return [j for j in self.jobs if j.start_s <= self.t_s < j.end_s]

    def _read_quota(self) -> None:
        parsed = parse_cpu_max(read_text(self.dir / "cpu.max"))
        if parsed is not None:
            self._quota_us, self._period_us = parsed[0], parsed[1] or self._period_us

    def _demand_cores(self) -> int:
        return sum(j.cores for j in self.running())

    def util(self) -> float:
        """Busy fraction of all the board's cores (0..1), for the board's totals."""
        self._read_quota()
        demand = self._demand_cores()
        if demand == 0:
            self.share = 1.0
            return 0.0
        allowed = float("inf") if self._quota_us is None else self._quota_us / self._period_us
        self.share = min(1.0, allowed / demand)
        return demand * self.share / self.spec.n_cores_total

    def package_loads(self) -> list[float]:
        """Per package, Σ cores · share · intensity / cores_per_package (0..1): its dynamic-power fraction."""
        loads = [0.0] * self.spec.n_packages
        for j in self.running():
            loads[j.package] += j.cores * self.share * j.intensity / self.spec.cores_per_package
        return [min(1.0, x) for x in loads]

    def account(self, util: float, dt_s: float, freqs_khz: tuple[float, ...] | None = None) -> None:
        """Charge ``dt_s`` s of the running jobs: CPU time, ground-truth energy at the packages' frequencies."""
        model, n = self.board.model, self.spec.cores_per_package
        for j in self.running():
            f_khz = freqs_khz[j.package] if freqs_khz else float(self.spec.f_max_khz)
            dyn_full_w = model.power_w(f_khz, 1.0) - model.p_idle_w
            busy_s = j.cores * self.share * dt_s
            self.cpu_s[j.id] += busy_s
            self.truth_j[j.id] += busy_s * (j.intensity * dyn_full_w + model.p_idle_w) / n
            self._usage_s += busy_s
            self._publish_job(j)
        publish_text(self.dir / "cpu.stat", _stat(self._usage_s))
        self.t_s += dt_s

    def _publish_job(self, job: SimJob) -> None:
        d = self.dir / f"job-{job.id}"
        if not d.is_dir():
            n = self.spec.cores_per_package
            first = job.package * n
            write_files(d, {"cpu.max": f"{job.cores * DEFAULT_PERIOD_US} {DEFAULT_PERIOD_US}",
                            "cpuset.cpus.effective": f"{first}-{first + n - 1}"})
        publish_text(d / "cpu.stat", _stat(self.cpu_s[job.id]))

    def truth_wh(self) -> dict[str, float]:
        """Ground-truth energy of every job so far, Wh."""
        return {k: v / 3600.0 for k, v in self.truth_j.items()}


def _stat(usage_s: float) -> str:
    usec = int(usage_s * 1e6)
    return f"usage_usec {usec}\nuser_usec {usec}\nsystem_usec 0\n"
