"""Sandbox start latency and throughput loss against running the same job bare.

Run as root on a machine with bubblewrap: ``.venv/bin/python benchmarks/workloads.py``. The jobs use
Debian's /usr/bin/python3 with the venv's numpy bound read-only (as in tests/jobs). Prints a table:
start latency of `/bin/true` and of python startup (bare vs sandboxed, median of N), and Monte Carlo
paths/s and CPU time per path (getrusage of the child; the job cgroup's CPU usage) bare vs in the
sandbox with its cgroup: N_PAIRS runs of each, interleaved (bare, sandboxed, bare,
...) so that load from elsewhere hits both alike; the loss is the median of the pairs' losses. Both get the
same environment (one BLAS/OpenMP thread, as the sandbox sets for a 1-core job).
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy

from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_agent.jobs.config import JobsConfig, RuntimeBind
from qrad_agent.jobs.sandbox import build_launch, ensure_job_user

N_START = 30
N_PAIRS = 7
LAST_CPU_S = [0.0]
MC_PATHS = 8_000_000
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MC = Path(__file__).parents[1] / "qrad_agent" / "jobs" / "examples" / "montecarlo.py"
MC_ARGS = ["--seed", "7", "--paths", str(MC_PATHS), "--batch", "20000", "--steps", "64"]


def _cfg(base: Path) -> JobsConfig:
    np_dir = Path(numpy.__file__).parent
    runtime = [RuntimeBind(host=np_dir, sandbox=Path("/opt/pylib/numpy"))]
    if (np_dir.parent / "numpy.libs").is_dir():
        runtime.append(RuntimeBind(host=np_dir.parent / "numpy.libs", sandbox=Path("/opt/pylib/numpy.libs")))
    return JobsConfig(jobs_dir=base, cgroup=Path(f"/sys/fs/cgroup/qrad-bench-{uuid.uuid4().hex[:6]}"),
                      python=Path("/usr/bin/python3"), runtime=runtime, env={"PYTHONPATH": "/opt/pylib"})


def _sandboxed(cfg, user, tree, work: Path, command: list[str], n: int) -> tuple[list[float], str]:
    """Wall times of ``n`` sandboxed runs and the last stdout; CPU seconds of the last run in LAST_CPU_S."""
    times, out = [], ""
    for i in range(n):
        cg = tree.create(f"b{i}", 1, 1 << 30, 64)
        launch = build_launch(cfg, user, f"b{i}", 1, work, cg.procs_files, 1 << 30, command)
        t0 = time.perf_counter()
        proc = subprocess.run(launch.argv, env=launch.env, pass_fds=launch.fds, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        launch.close()
        out = proc.stdout
        LAST_CPU_S[0] = cg.cpu_s()
        while not cg.try_remove():
            time.sleep(0.01)
    return times, out


def _bare(command: list[str], cwd: Path, n: int) -> tuple[list[float], str]:
    """Wall times of ``n`` bare runs and the last stdout; CPU seconds of the last run in LAST_CPU_S."""
    times, out = [], ""
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              env={"PYTHONPATH": str(Path(numpy.__file__).parents[1]), **ONE_THREAD})
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        LAST_CPU_S[0] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        out = proc.stdout
    return times, out


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="qrad-bench-", dir="/tmp"))
    base.chmod(0o755)
    cfg = _cfg(base)
    user = ensure_job_user(cfg)
    tree = JobsCgroupTree(cfg.cgroup)
    tree.setup()
    work = base / "work"
    work.mkdir()
    shutil.copyfile(MC, work / "montecarlo.py")
    shutil.chown(work, user.name, user.name)
    shutil.chown(work / "montecarlo.py", user.name, user.name)
    rows = []
    try:
        for label, cmd in (("/bin/true", ["/usr/bin/true"]), ("python3 -c pass", ["python3", "-c", "pass"])):
            bare_cmd = ["/usr/bin/python3", *cmd[1:]] if cmd[0] == "python3" else cmd
            bare, _ = _bare(bare_cmd, work, N_START)
            boxed, _ = _sandboxed(cfg, user, tree, work, cmd, N_START)
            rows.append((f"start: {label} (median ms)", statistics.median(bare) * 1e3,
                         statistics.median(boxed) * 1e3, f"+{(statistics.median(boxed) - statistics.median(bare)) * 1e3:.1f} ms"))
        bare_rates, boxed_rates, bare_cpu, boxed_cpu = [], [], [], []
        for _ in range(N_PAIRS):
            _, out = _bare(["/usr/bin/python3", str(work / "montecarlo.py"), *MC_ARGS], base, 1)
            bare_rates.append(json.loads(out.splitlines()[-1])["paths_per_s"])
            bare_cpu.append(LAST_CPU_S[0] / MC_PATHS * 1e6)
            _, out = _sandboxed(cfg, user, tree, work, ["python3", "montecarlo.py", *MC_ARGS], 1)
            boxed_rates.append(json.loads(out.splitlines()[-1])["paths_per_s"])
            boxed_cpu.append(LAST_CPU_S[0] / MC_PATHS * 1e6)
        b, s = statistics.median(bare_rates), statistics.median(boxed_rates)
        losses = sorted((x - y) / x * 100 for x, y in zip(bare_rates, boxed_rates))
        rows.append((f"Monte Carlo paths/s (median of {N_PAIRS})", b, s,
                     f"{statistics.median(losses):+.1f} % loss (pairs: {losses[0]:+.1f} .. {losses[-1]:+.1f} %)"))
        bc, sc = statistics.median(bare_cpu), statistics.median(boxed_cpu)
        rows.append((f"Monte Carlo CPU µs per path (median of {N_PAIRS})", bc, sc,
                     f"{(sc - bc) / bc * 100:+.1f} % more CPU per path (insensitive to other load)"))
    finally:
        for d in set(tree.dirs.values()):
            d.rmdir()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'measure':44} {'bare':>12} {'sandboxed':>12}  difference")
    for name, bare_v, boxed_v, diff in rows:
        print(f"{name:44} {bare_v:>12.2f} {boxed_v:>12.2f}  {diff}")
    print(f"(python {sys.version.split()[0]} runs the harness; jobs run /usr/bin/python3)")


if __name__ == "__main__":
    main()
