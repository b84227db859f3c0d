"""Hardware-in-the-loop: real sandboxed jobs heat hw-sim's room, in real time, the room sped up.

The agent is the daemon's own code (sensor hub, thermostat, power manager, safety layer, job runner) built
from hw-sim's example configuration with jobs enabled on a real cgroup of this machine
(``/sys/fs/cgroup/qrad-hil-<id>``, v1 or v2) and every time constant divided by ``--speed`` (control and
sensor periods, PID integral/derivative times, stale/stuck/heartbeat timeouts; rate-of-change limits
multiplied), and a calendar clock running ``--speed`` times faster for the weekly schedule.

hw-sim's heater (board + 2R2C room + room sensor, Lyon-Bron weather) runs on the same loop at ``--speed``;
its board takes its utilisation from the real jobs (qrad_hwsim.job_heat): the jobs' measured CPU seconds
per real second over the jobs' CPUs, turned into watts by the board's power model at the P-state caps the
agent writes on the simulated cpufreq/RAPL files, all into the room. A feeder keeps the queue full of
signed Monte Carlo bundles (qrad_agent/jobs/examples/montecarlo.py), collects each result's path count
and acknowledges it.

At the end: the KPI table (qrad_agent.kpi), an hourly trace, the jobs' counts (completed, failed, frozen)
and the work per kWh. Work per kWh: a real second at utilisation u stands for ``speed`` simulated seconds
of the board at u, so the board's work is its delivered compute (KPI core-hours at nominal frequency)
times the paths per CPU-second the real jobs measured here; that divided by the simulated heating energy.

This run found two agent bugs, both fixed (JobsHeat.release now thaws and lets queued jobs start;
a v1 job cgroup's quota is lifted before its removal).

Run as root with bubblewrap and the job user (as tests/jobs): ``python benchmarks/hil_jobs.py --hours 2``
(24 h at the default speed 60 takes 24 real minutes). The machine's other load counts: jobs get only the CPU
the machine leaves them, and only that heats the room.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import AgentConfig, parse_config
from qrad_agent.jobs.examples import make_bundle
from qrad_agent.jobs.model import Status
from qrad_agent.kpi import compute_kpis, format_table
from qrad_agent.log import setup_logging
from qrad_agent.sdnotify import Notifier
from qrad_agent.sim import _fast_tmp, example_config_data
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.job_heat import attach_measured_jobs
from qrad_hwsim.sim_clock import parse_start
from qrad_hwsim.weather import Weather, default_weather_path

MODEL_STEP_S = 30.0  # simulated seconds per heater step (as qrad-agent sim)
MC_PATHS = 2_000_000  # one job: ~4-5 CPU-seconds of Monte Carlo on this class of machine
MC_BATCH = 20_000


class ScaledClock(Clock):
    """Durations on the real loop clock; the calendar (for the schedule) runs ``speed`` times faster."""

    def __init__(self, calendar_start: datetime, loop_start_s: float, speed: float) -> None:
        super().__init__(calendar_start, loop_start_s)
        self.speed = speed

    def now(self) -> datetime:
        assert self._calendar_start is not None and self._loop_start_s is not None
        return self._calendar_start + timedelta(seconds=(self.monotonic() - self._loop_start_s) * self.speed)


def numpy_runtime() -> tuple[list[dict], dict[str, str]]:
    """Debian's python3 in the sandbox with the venv's numpy bound read-only (as tests/jobs and workloads)."""
    import numpy

    np_dir = Path(numpy.__file__).parent
    binds = [{"host": str(np_dir), "sandbox": "/opt/pylib/numpy"}]
    if (np_dir.parent / "numpy.libs").is_dir():
        binds.append({"host": str(np_dir.parent / "numpy.libs"), "sandbox": "/opt/pylib/numpy.libs"})
    return binds, {"PYTHONPATH": "/opt/pylib"}


def hil_config(root: Path, base: Path, cgroup: Path, public_key: Path, speed: float,
               mode: str = "auto") -> AgentConfig:
    """The example config: paths under ``root``, jobs on the real ``cgroup``, time constants / ``speed``."""
    data = example_config_data()
    data["state_dir"] = str(root / "state")
    data["api"] = {"socket_path": str(root / "api.sock")}
    data["power"].update(sysfs_root=str(root), jobs_cgroup=str(cgroup))
    # a safety timer, not a control constant: scaled, but never under 5 real seconds (job starts block the
    # loop for a few ms each; a loaded CI machine must not trip it)
    data["power"]["heartbeat_timeout_s"] = max(5.0, data["power"].get("heartbeat_timeout_s", 120.0) / speed)
    data["logging"] = {"level": "warning", "format": "console"}
    data["fire"] = {"enabled": False}
    data["sensors"] = [s for s in data["sensors"] if s["type"] == "hwmon" and s["chip"] == "sht4x"]
    for s in data["sensors"]:
        s["period_s"] = s.get("period_s", 10.0) / speed
        s["stuck_after_s"] = s.get("stuck_after_s", 600.0) / speed
    hub = data.setdefault("sensor_hub", {})
    hub["max_rate_per_s"] = {"temperature": 1.0 * speed, "relative_humidity": 5.0 * speed,
                             "carbon_dioxide": 200.0 * speed, "pressure": 5.0 * speed}
    th = data["thermostat"]
    th["room_channels"] = ["room_temp"]
    th["mode"] = mode
    th["period_s"] = th.get("period_s", 30.0) / speed
    th["stale_after_s"] = th.get("stale_after_s", 300.0) / speed
    th["pid"]["ti_s"] = th["pid"].get("ti_s", 1100.0) / speed
    th["pid"]["td_s"] = th["pid"].get("td_s", 0.0) / speed
    binds, env = numpy_runtime()
    data["jobs"] = {"enabled": True, "jobs_dir": str(base / "jobs"), "cgroup": str(cgroup),
                    "public_key": str(public_key), "python": "/usr/bin/python3", "runtime": binds, "env": env,
                    "checkpoint_grace_s": 2.0, "poll_s": 0.1, "max_pids": 256}
    return parse_config(data, "hil_jobs config")


@dataclass
class Trace:
    """One row per model step (simulated seconds since start)."""

    t_s: list[float] = field(default_factory=list)
    air_c: list[float] = field(default_factory=list)
    outdoor_c: list[float] = field(default_factory=list)
    setpoint_c: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    util: list[float] = field(default_factory=list)
    level: list[float] = field(default_factory=list)
    dt_s: list[float] = field(default_factory=list)


@dataclass
class JobStats:
    submitted: int = 0
    paths: int = 0
    cpu_s: float = 0.0  # CPU seconds of the completed jobs (their cgroups' accounting)
    statuses: Counter = field(default_factory=Counter)
    frozen_jobs: int = 0  # jobs that were frozen at least once while running
    frozen_job_s: float = 0.0
    paths_per_s: list[float] = field(default_factory=list)
    freeze_events: int = 0
    frozen_real_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    frozen_since: float | None = None  # loop time the current freeze began


def _result(runner, job_id: str) -> dict | None:
    lines = runner.store.tail(job_id, "stdout", 1 << 14).strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def _harvest(runner, stats: JobStats) -> None:
    for record in runner.results():
        stats.statuses[record.status.value] += 1
        if record.usage.frozen_s > 0:
            stats.frozen_jobs += 1
            stats.frozen_job_s += record.usage.frozen_s
        if record.status == Status.SUCCEEDED:
            result = _result(runner, record.id) or {}
            stats.paths += int(result.get("paths", 0))
            stats.cpu_s += record.usage.cpu_s
            if result.get("paths_per_s"):
                stats.paths_per_s.append(float(result["paths_per_s"]))
        elif record.status != Status.CANCELLED and len(stats.failures) < 5:
            stats.failures.append(f"{record.id}: {record.status.value} {record.reason} "
                                  f"{runner.store.tail(record.id, 'stderr', 300)!r}")
        runner.ack(record.id)


async def feed_jobs(runner, key: Ed25519PrivateKey, bundles: Path, stats: JobStats, run_id: str) -> None:
    """Keep the queue one job deeper than the slots; collect results; watch freezing."""
    loop = asyncio.get_running_loop()
    while True:
        queued = sum(1 for r in runner.records.values() if r.status == Status.QUEUED)
        while queued < runner.cfg.total_slots + 1:
            job_id = f"hil-{run_id}-{stats.submitted:05d}"
            dest = bundles / job_id
            make_bundle("montecarlo", dest, job_id, ["--seed", str(stats.submitted + 1), "--paths", str(MC_PATHS),
                                                     "--batch", str(MC_BATCH)], key, devices=[runner.device_id], checkpointable=True,
                        walltime_s=600.0)
            record = runner.submit(dest)
            shutil.rmtree(dest, ignore_errors=True)
            stats.submitted += 1
            if record.status == Status.REJECTED:
                raise RuntimeError(f"job refused: {record.reason} {record.detail}")
            queued += 1
        _harvest(runner, stats)
        now = loop.time()
        if runner.frozen and stats.frozen_since is None:
            stats.freeze_events += 1
            stats.frozen_since = now
        elif not runner.frozen and stats.frozen_since is not None:
            stats.frozen_real_s += now - stats.frozen_since
            stats.frozen_since = None
        await asyncio.sleep(0.1)


def remove_cgroups(cgroup: Path) -> None:
    """Thaw and remove the run's jobs cgroup in every hierarchy (v1) or its directory (v2); best effort."""
    from qrad_agent.jobs.cgroups import JobsCgroupTree

    try:
        tree = JobsCgroupTree(cgroup)
        try:
            tree.thaw()
        except Exception:  # noqa: BLE001
            pass
        for d in set(tree.dirs.values()):
            for child in d.glob("job-*"):
                try:
                    child.rmdir()
                except OSError:
                    pass
            if d.exists():
                d.rmdir()
    except Exception as exc:  # noqa: BLE001 - report, do not hide the run's result
        print(f"warning: cgroup {cgroup} not fully removed: {exc}", file=sys.stderr)


async def run(args: argparse.Namespace) -> int:
    speed, hours = args.speed, args.hours
    run_id = uuid.uuid4().hex[:6]
    setup_logging("hwsim-0001", args.log_level, "console")
    base = Path(tempfile.mkdtemp(prefix=f"qrad-hil-{run_id}-", dir="/tmp"))
    base.chmod(0o755)  # the job user must traverse it
    root = Path(tempfile.mkdtemp(prefix=f"qrad-hil-sys-{run_id}-", dir=_fast_tmp()))
    cgroup = Path(f"/sys/fs/cgroup/qrad-hil-{run_id}")
    key = Ed25519PrivateKey.generate()
    pub = base / "platform.pub"
    pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    bundles = base / "bundles"
    bundles.mkdir()
    start = parse_start(args.start) + timedelta(hours=args.start_hour)
    weather = Weather.load(default_weather_path())
    stats = JobStats()
    trace = Trace()
    agent = None
    try:
        cfg = hil_config(root, base, cgroup, pub, speed, args.mode)
        heater = SimulatedHeater(root, HeaterSpec(initial_air_c=cfg.thermostat.setpoints.comfort_c), weather,
                                 start, seed=args.seed)
        loop = asyncio.get_running_loop()
        agent = Agent(cfg, ScaledClock(start, loop.time(), speed), Notifier({}))
        assert agent.jobs is not None
        meter = attach_measured_jobs(heater, cfg.jobs.cgroup, cfg.jobs.cpus, speed)
        board_step = heater.step

        def step(dt_s: float):
            state = board_step(dt_s)
            setpoint_c = agent.thermostat.setpoint_c
            if setpoint_c == setpoint_c:  # NaN before the first control step
                for name, value in (("t_s", state.t_s), ("air_c", state.air_c), ("outdoor_c", state.outdoor_c),
                                    ("setpoint_c", setpoint_c), ("power_w", state.power_w),
                                    ("compute", state.compute_core_equiv), ("util", heater.last_board.util),
                                    ("level", agent.power.level), ("dt_s", dt_s)):
                    getattr(trace, name).append(value)
            return state

        heater.step = step  # type: ignore[method-assign]
        print(f"HIL run {run_id}: {hours:g} simulated h from {start:%Y-%m-%d %H:%M} at speed {speed:g} "
              f"({hours * 3600 / speed / 60:.1f} real min); jobs cgroup {cgroup} (v{agent.jobs.tree.version}), "
              f"{cfg.jobs.cpus} CPUs, {cfg.jobs.total_slots} slots; power chain {agent.power.chain_names()}",
              flush=True)
        stop = asyncio.Event()
        t0 = time.monotonic()
        cpu0 = meter.usage_s()
        tasks = {
            asyncio.create_task(agent.run(stop), name="agent"): "agent",
            asyncio.create_task(heater.run(step_s=MODEL_STEP_S, speed=speed), name="hw-sim"): "hw-sim",
            asyncio.create_task(feed_jobs(agent.jobs, key, bundles, stats, run_id), name="feeder"): "feeder",
        }
        progress = asyncio.create_task(_progress(trace, hours, args.progress_h, agent.jobs), name="progress")
        done, _ = await asyncio.wait(tasks, timeout=hours * 3600.0 / speed, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
            raise RuntimeError(f"{tasks[task]} ended early")
        real_s = time.monotonic() - t0
        if stats.frozen_since is not None:  # still frozen at the end
            stats.frozen_real_s += loop.time() - stats.frozen_since
            stats.frozen_since = None
        jobs_cpu_s = meter.usage_s() - cpu0
        progress.cancel()
        stop.set()
        for t, n in tasks.items():
            if n != "agent":
                t.cancel()
        await asyncio.gather(*tasks, progress, return_exceptions=True)
        running_at_end = sum(1 for r in agent.jobs.records.values() if not r.status.terminal)
        _harvest(agent.jobs, stats)
        report(trace, stats, heater, args, real_s, jobs_cpu_s, cfg.jobs.cpus, running_at_end, agent)
        return 0
    finally:
        remove_cgroups(cgroup)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


async def _progress(trace: Trace, hours: float, every_h: float, runner) -> None:
    next_h = every_h
    while True:
        await asyncio.sleep(1.0)
        if trace.t_s and trace.t_s[-1] / 3600.0 >= next_h:
            i = len(trace.t_s) - 1
            print(f"  {trace.t_s[i] / 3600:5.1f} h  air {trace.air_c[i]:5.2f} °C  setpoint {trace.setpoint_c[i]:4.1f}"
                  f"  power {trace.power_w[i]:5.0f} W  jobs util {trace.util[i]:.2f}  level {trace.level[i]:.2f}"
                  f"  running {len(runner.active)} hold {runner.hold} frozen {runner.frozen}",
                  flush=True)
            next_h += every_h


def report(trace: Trace, stats: JobStats, heater: SimulatedHeater, args, real_s: float, jobs_cpu_s: float,
           cpus: int, running_at_end: int, agent: Agent) -> None:
    a = {k: np.asarray(v, dtype=float) for k, v in trace.__dict__.items()}
    if len(a["t_s"]) < 2:
        raise RuntimeError("no samples recorded")
    # KPIs on a uniform grid of the model step (steps are 30 s; a late loop splits one into 30 s + rest)
    grid = np.arange(a["t_s"][0], a["t_s"][-1] + 1e-9, MODEL_STEP_S)
    series = {k: np.interp(grid, a["t_s"], a[k]) for k in ("air_c", "setpoint_c", "power_w", "compute")}
    held = (np.searchsorted(a["t_s"], grid, side="right") - 1).clip(0, len(a["t_s"]) - 1)
    series["setpoint_c"] = a["setpoint_c"][held]  # a setpoint is a step signal: hold, do not interpolate
    spec = heater.spec.board
    compute_max = spec.n_cores_total * spec.f_max_khz / spec.f_nominal_khz
    kpis = compute_kpis(MODEL_STEP_S, series["air_c"], series["setpoint_c"], series["power_w"], series["compute"],
                        compute_max)
    energy_exact_kwh = float(np.sum(a["power_w"] * a["dt_s"]) / 3.6e6)
    print("\nKPIs (qrad_agent.kpi), real jobs as the heat source")
    print(format_table({"hil-jobs": kpis}))
    print(f"{'energy, exact step sum (kWh)':<28}{energy_exact_kwh:>16.3f}")
    in_band = float(np.mean(np.abs(series["air_c"] - series["setpoint_c"]) <= 0.5) * 100)
    print(f"{'time within ±0.5 K (%)':<28}{in_band:>16.1f}")

    print("\nHourly (simulated): outdoor, setpoint, room air, heater power, measured jobs utilisation")
    print(f"{'hour':>5} {'out °C':>7} {'set °C':>7} {'air °C':>7} {'min':>6} {'max':>6} {'W':>6} {'util':>5} {'level':>6}")
    hour = (a["t_s"] - a["t_s"][0]) // 3600
    for h in np.unique(hour):
        m = hour == h
        print(f"{int(h):>5} {a['outdoor_c'][m].mean():>7.1f} {a['setpoint_c'][m].mean():>7.2f} {a['air_c'][m].mean():>7.2f}"
              f" {a['air_c'][m].min():>6.2f} {a['air_c'][m].max():>6.2f} {a['power_w'][m].mean():>6.0f}"
              f" {a['util'][m].mean():>5.2f} {a['level'][m].mean():>6.2f}")

    paths_per_cpu_s = stats.paths / stats.cpu_s if stats.cpu_s > 0 else float("nan")
    board_paths = paths_per_cpu_s * kpis.compute_core_h * 3600.0
    print("\nJobs (real, sandboxed, on this machine)")
    done = stats.statuses.get("succeeded", 0)
    print(f"  submitted {stats.submitted}, completed {done}, other ends {dict(stats.statuses - Counter({'succeeded': done}))},"
          f" still queued/running at stop {running_at_end}")
    print(f"  freeze events {stats.freeze_events} (frozen {stats.frozen_real_s:.1f} real s,"
          f" {stats.frozen_real_s * args.speed / 3600:.2f} simulated h); jobs frozen while running: {stats.frozen_jobs}"
          f" ({stats.frozen_job_s:.1f} job-s)")
    print(f"  jobs' CPU time {jobs_cpu_s:.1f} s over {real_s:.1f} real s on {cpus} CPUs:"
          f" mean utilisation {jobs_cpu_s / (real_s * cpus):.3f}")
    print(f"  paths computed (completed jobs) {stats.paths:,} in {stats.cpu_s:.1f} CPU-s:"
          f" {paths_per_cpu_s:,.0f} paths per CPU-s"
          + (f" (jobs' own median {np.median(stats.paths_per_s):,.0f} paths/s)" if stats.paths_per_s else ""))
    print("\nWork per energy (board = this machine's measured utilisation on hw-sim's 16-core board)")
    print(f"  board compute {kpis.compute_core_h:.2f} core-h @nominal x {paths_per_cpu_s:,.0f} paths/CPU-s"
          f" = {board_paths:.3e} paths over {kpis.energy_kwh:.3f} kWh")
    print(f"  paths per kWh: {board_paths / kpis.energy_kwh:.3e}" if kpis.energy_kwh > 0 else "  no energy")
    failed = agent.power.status().get("failed")
    if failed:
        print(f"  power interfaces dropped during the run: {failed}")
    for line in stats.failures:
        print(f"  failed job: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--start", default="03-02", help="simulated start day, MM-DD or YYYY-MM-DD "
                        "(default 03-02: a Monday of the heating season, 2026 calendar)")
    parser.add_argument("--start-hour", type=float, default=0.0, help="hour of the start day")
    parser.add_argument("--mode", default="auto", choices=["auto", "comfort", "eco"], help="thermostat mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress-h", type=float, default=1.0, help="print a line every this many sim hours")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (cgroups, the job user, bubblewrap sandboxes)", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
