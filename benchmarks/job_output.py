"""Cost and outcome of measuring and reporting hostile job output: the non-recursive walk (jobs/tree.py) and
the bounded result (jobs/results.py) against the recursive code they replaced, on the same trees.

Run: ``.venv/bin/python benchmarks/job_output.py`` (no root needed; builds its trees under /tmp and removes
them). Prints one table: per tree, the time to measure it (median of 5) and what each method counts —
baseline: os.fwalk summing st_size (the runner's old poll); new: tree.usage (allocated blocks, inodes);
then the result message of each tree: baseline = the old summary (rglob, 64 files, no bound), new =
results.summary, in bytes of JSON or the error raised.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from qrad_agent.jobs import results
from qrad_agent.jobs.model import JobRecord, Status
from qrad_agent.jobs.store import JobStore
from qrad_agent.jobs.tree import remove_tree, usage
from qrad_agent.sync.contract import JobStatusMessage, Kind, envelope_bytes

REPEATS = 5


def make_flat(work: Path, n: int = 10_000) -> None:
    for i in range(n):
        (work / f"f{i}").write_bytes(b"x")


def make_deep(work: Path, depth: int = 1100) -> None:
    fd = os.open(work, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=child), "wb") as f:
            f.write(b"x" * 16000)
        os.close(fd)
        fd = child
    os.close(fd)


def make_long_names(work: Path) -> None:
    for i in range(64):
        d = work.joinpath(*(f"{i:02d}" + "d" * 240 for _ in range(12)))
        d.mkdir(parents=True)
        (d / ("f" * 200)).write_text(str(i))


def make_bad_name(work: Path) -> None:
    (work / os.fsdecode(b"bad\xffname")).write_bytes(b"1")


def make_sparse(work: Path) -> None:
    with open(work / "prealloc", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, 64 << 20)  # blocks allocated, st_size 64 MiB too
    with open(work / "sparse", "wb") as f:
        f.truncate(1 << 30)  # st_size 1 GiB, no blocks


def old_bytes(work: Path) -> int:
    total = 0
    for _, _, files, dirfd in os.fwalk(work, follow_symlinks=False):
        for name in files:
            total += os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_size
    return total


def old_summary(work: Path) -> dict:
    import hashlib

    outputs = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file() and not p.is_symlink()):
        if len(outputs) >= 64:
            continue
        outputs[path.relative_to(work).as_posix()] = {"bytes": path.stat().st_size,
                                                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"outputs": outputs}


def _counted(work: Path) -> str:
    u = usage(work)
    return f"{u.allocated_bytes} B, {u.inodes}" + (" (too deep)" if u.too_deep else "")


def timed(fn: Callable[[], object]) -> tuple[str, float]:
    times, out = [], ""
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        try:
            out = str(fn())
        except RecursionError:
            return "RecursionError", float("nan")
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times) * 1000


def message(fn: Callable[[], dict]) -> str:
    """The outbox's bytes for a job status carrying the result, as the agent builds them, or the error."""
    try:
        body = JobStatusMessage(job_id="j", status="succeeded", result=fn()).model_dump(mode="json")
        return f"{len(envelope_bytes('heater-1', 1, 0.0, Kind.JOB, body))} B"
    except (RecursionError, ValueError) as exc:
        return type(exc).__name__


def main() -> None:
    trees = {"10 000 one-byte files": make_flat, "1 100 levels deep": make_deep,
             "64 long names": make_long_names, "non-UTF-8 name": make_bad_name,
             "preallocated + sparse": make_sparse}
    base = Path(tempfile.mkdtemp(prefix="qrad-bench-output-"))
    print(f"{'tree':24} {'baseline (st_size)':>22} {'ms':>7} {'new (blocks, inodes)':>28} {'ms':>7} "
          f"{'old message':>22} {'new message':>11}")
    try:
        for name, make in trees.items():
            store = JobStore(base)
            job_id = f"j{abs(hash(name)) % 10_000}"
            work = store.work_dir(job_id)
            work.mkdir(parents=True)
            make(work)
            record = JobRecord(id=job_id, status=Status.SUCCEEDED)
            old, old_ms = timed(lambda w=work: f"{old_bytes(w)} B")
            new, new_ms = timed(lambda w=work: _counted(w))
            old_msg = message(lambda w=work: old_summary(w))
            new_msg = message(lambda r=record, s=store: results.summary(r, s, set()))
            print(f"{name:24} {old:>22} {old_ms:7.1f} {new:>28} {new_ms:7.1f} {old_msg:>22} {new_msg:>11}")
            remove_tree(store.job_dir(job_id))
    finally:
        remove_tree(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
