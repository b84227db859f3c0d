"""Per-job cgroups under the jobs' parent cgroup, cgroup v2 (heater boards) and v1 (v1-only machines).

Sources: kernel Documentation/admin-guide/cgroup-v2.rst (cpu.max, cpu.stat usage_usec, memory.max,
memory.swap.max, memory.peak, memory.events oom_kill, pids.max, pids.events, cgroup.freeze, cgroup.kill)
and cgroup-v1/{memory,pids,freezer-subsystem,cpuacct}.rst with scheduler/sched-bwc.rst (cfs_quota_us).

One small interface for both: `JobsCgroupTree` (the parent: quota, freeze, thaw, usage) hands out
`JobCgroup`s (one per job: limits, usage, kill, remove). Every write is synchronous and short: freezing is
one write to the parent, which the kernel applies to every job below it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from qrad_agent.errors import ActuatorError

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer")
V2_CONTROLLERS = ("cpu", "memory", "pids")
PERIOD_US = 100_000
MIN_QUOTA_US = 1000


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise ActuatorError(f"{path}: cannot write {value!r}: {exc.strerror or exc}") from exc


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ActuatorError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _keyed(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed file (memory.events, pids.events, cpu.stat); 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


class JobCgroup:
    """One job's cgroup: a directory per hierarchy (v1) or one directory (v2)."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs  # controller -> directory (v2: every controller maps to the same directory)
        self.cpu_quota_cap_us: int | None = None  # v1: a child's quota may not exceed its parent's

    @property
    def procs_files(self) -> list[Path]:
        """The cgroup.procs files the job's first process writes its pid into before exec."""
        return sorted({d / "cgroup.procs" for d in self.dirs.values()})

    def set_limits(self, cores: int, memory_bytes: int, pids: int) -> None:
        if self.version == 2:
            d = self.dirs["cpu"]
            _write(d / "cpu.max", f"{cores * PERIOD_US} {PERIOD_US}")
            _write(d / "memory.max", str(memory_bytes))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(pids))
            return
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(PERIOD_US))
        quota = cores * PERIOD_US
        if self.cpu_quota_cap_us is not None:
            quota = min(quota, self.cpu_quota_cap_us)
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory_bytes))
        if (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
            _write(self.dirs["memory"] / "memory.memsw.limit_in_bytes", str(memory_bytes))
        _write(self.dirs["pids"] / "pids.max", str(pids))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.procs_files:
            try:
                found.update(int(p) for p in path.read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def cpu_s(self) -> float:
        if self.version == 2:
            return _keyed(self.dirs["cpu"] / "cpu.stat", "usage_usec") / 1e6
        try:
            return int(_read(self.dirs["cpuacct"] / "cpuacct.usage")) / 1e9
        except (ActuatorError, ValueError):
            return 0.0

    def memory_peak(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int(_read(self.dirs["memory"] / name))
        except (ActuatorError, ValueError):
            return 0

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _keyed(self.dirs["memory"] / name, "oom_kill")

    def pids_limit_hits(self) -> int:
        return _keyed(self.dirs["pids"] / "pids.events", "max")

    def signal_all(self, sig: int) -> int:
        """Send ``sig`` to every process of the job; returns how many were signalled."""
        count = 0
        for pid in self.pids():
            try:
                os.kill(pid, sig)
                count += 1
            except ProcessLookupError:
                pass
        return count

    def kill_all(self, thaw_root: Path | None) -> None:
        """SIGKILL every process. v1: the job's own freezer is frozen first (nothing forks while the pids
        are signalled), then each task moves to the freezer root (``thaw_root``), which thaws it so the
        kill lands. v2 frozen tasks die on SIGKILL, and cgroup.kill does it in one write."""
        if self.version == 2 and (self.dirs["cpu"] / "cgroup.kill").exists():
            try:
                _write(self.dirs["cpu"] / "cgroup.kill", "1")
                return
            except ActuatorError:
                pass
        freezer = self.dirs.get("freezer") if self.version == 1 else None
        if freezer is not None:  # frozen first, a fork bomb cannot replace what is being killed
            try:
                (freezer / "freezer.state").write_text("FROZEN")
            except OSError:
                pass
        self.signal_all(signal.SIGKILL)
        if self.version == 1 and thaw_root is not None:
            for pid in self.pids():
                try:
                    (thaw_root / "cgroup.procs").write_text(str(pid))
                except OSError:
                    pass

    def try_remove(self) -> bool:
        """Remove the directories; False while a process is still inside (the caller retries).

        On v1 the job's quota is lifted first: a removed cgroup lingers in the kernel (dying) with its last
        cpu.cfs_quota_us, and the parent's quota could then never be lowered below it again (EINVAL).
        """
        if self.version == 1 and "cpu" in self.dirs:
            try:
                (self.dirs["cpu"] / "cpu.cfs_quota_us").write_text("-1")
            except OSError:
                pass
        done = True
        for d in sorted(set(self.dirs.values())):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        return done


class JobsCgroupTree:
    """The jobs' parent cgroup (``cfg.cgroup``), in v2 or in each v1 hierarchy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.job_quota_us: dict[str, int] = {}  # v1: each job's own quota, to restore after a clamp
        root = path.parent
        if (root / "cgroup.controllers").exists():
            self.version = 2
            self.root = root
            self.dirs = {c: path for c in V2_CONTROLLERS}
            self.dirs["freezer"] = path
        elif all((root / c).is_dir() for c in V1_CONTROLLERS):
            self.version = 1
            self.root = root
            self.dirs = {c: root / c / path.name for c in V1_CONTROLLERS}
        else:
            raise ActuatorError(f"{root}: neither a cgroup v2 mount nor v1 hierarchies {V1_CONTROLLERS}")

    def setup(self) -> None:
        """Create the parent cgroup(s) and, on v2, enable the controllers the jobs need below it."""
        if self.version == 2:
            wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS)
            _write(self.root / "cgroup.subtree_control", wanted)
            self.path.mkdir(exist_ok=True)
            _write(self.path / "cgroup.subtree_control", wanted)
            return
        for d in self.dirs.values():
            d.mkdir(exist_ok=True)
        try:  # v1 memory: limits and accounting of the children roll up into the parent
            (self.dirs["memory"] / "memory.use_hierarchy").write_text("1")
        except OSError:
            pass  # already on, or children exist

    @property
    def cpu_dir(self) -> Path:
        """Where the quota lives: give this path to power's CgroupQuotaActuator."""
        return self.dirs["cpu"]

    def job(self, job_id: str) -> JobCgroup:
        return JobCgroup(self.version, {c: d / f"job-{job_id}" for c, d in self.dirs.items()})

    def create(self, job_id: str, cores: int, memory_bytes: int, pids: int) -> JobCgroup:
        """A fresh cgroup for the job with its limits set; removed again if a write fails."""
        cg = self.job(job_id)
        self.job_quota_us[f"job-{job_id}"] = cores * PERIOD_US
        try:
            for d in sorted(set(cg.dirs.values())):
                d.mkdir()
            if self.version == 1:
                parent = self._v1_quota()
                cg.cpu_quota_cap_us = parent if parent != 1 << 62 else None
            cg.set_limits(cores, memory_bytes, pids)
        except (OSError, ActuatorError) as exc:
            cg.try_remove()
            raise ActuatorError(f"job {job_id}: cgroup not created: {exc}") from exc
        return cg

    def leftovers(self) -> list[str]:
        """Job ids whose cgroups exist (after a crash of the agent)."""
        return sorted(p.name[4:] for p in self.dirs["cpu"].glob("job-*") if p.is_dir())

    # -- the heat actuator's primitives: synchronous, one short write each --

    def set_quota(self, share: float, cpus: int) -> None:
        quota = max(MIN_QUOTA_US, round(min(1.0, max(0.0, share)) * PERIOD_US * cpus))
        if self.version == 2:
            _write(self.cpu_dir / "cpu.max", f"{quota} {PERIOD_US}")
        else:
            self._set_v1_quota(quota)

    def release_quota(self) -> None:
        if self.version == 2:
            _write(self.cpu_dir / "cpu.max", f"max {PERIOD_US}")
        else:
            self._set_v1_quota(-1)

    def _set_v1_quota(self, quota: int) -> None:
        """v1 refuses a parent quota below a child's (sched-bwc.rst): clamp the jobs' own quotas first
        when lowering, restore them after when raising."""
        lowering = quota != -1 and quota < self._v1_quota()
        if lowering:
            self._clamp_children(quota)
        _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota))
        if not lowering:
            self._clamp_children(quota)

    def _v1_quota(self) -> int:
        try:
            value = int(_read(self.cpu_dir / "cpu.cfs_quota_us"))
        except (ActuatorError, ValueError):
            return -1
        return 1 << 62 if value == -1 else value

    def _clamp_children(self, parent_quota: int) -> None:
        for child in self.cpu_dir.glob("job-*"):
            own = self.job_quota_us.get(child.name, PERIOD_US)
            try:
                _write(child / "cpu.cfs_quota_us", str(own if parent_quota == -1 else min(own, parent_quota)))
            except ActuatorError:
                pass  # the job is ending: its cgroup is going away

    def freeze(self) -> None:
        if self.version == 2:
            _write(self.path / "cgroup.freeze", "1")
        else:
            _write(self.dirs["freezer"] / "freezer.state", "FROZEN")

    def thaw(self) -> None:
        if self.version == 2:
            _write(self.path / "cgroup.freeze", "0")
        else:
            _write(self.dirs["freezer"] / "freezer.state", "THAWED")

    def frozen(self) -> bool:
        if self.version == 2:
            return _keyed(self.path / "cgroup.events", "frozen") == 1
        return _read(self.dirs["freezer"] / "freezer.state").strip() == "FROZEN"

    @property
    def thaw_root(self) -> Path | None:
        return self.root / "freezer" if self.version == 1 else None

    def cpu_s(self) -> float:
        """CPU time used by every job so far, s."""
        return JobCgroup(self.version, self.dirs).cpu_s()
