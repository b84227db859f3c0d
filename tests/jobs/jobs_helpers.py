"""Helpers for the jobs tests: real bubblewrap sandboxes, real v1/v2 cgroups, a job user, signing keys.

The whole folder is skipped, with the reason, when this machine cannot run sandboxes (not root, no bwrap,
no user namespaces, no cgroup hierarchies).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from qrad_agent.jobs.bundle import replay_fields, sign_manifest, write_manifest
from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_agent.jobs.config import JobsConfig, RuntimeBind
from qrad_agent.jobs.model import JobRecord
from qrad_agent.jobs.runner import JobRunner

SYSTEM_PYTHON = Path("/usr/bin/python3")
DEVICE_ID = "heater-test"
"""The device id of the harness's runner; the signed bundles it makes name it."""


def _why_no_sandbox() -> str | None:
    if os.geteuid() != 0:
        return "needs root (cgroups and the job user)"
    if shutil.which("bwrap") is None:
        return "bubblewrap not installed (tests/run.sh installs it)"
    probe = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib64",
                            "/lib64", "--symlink", "usr/lib", "/lib", "/usr/bin/true"], capture_output=True)
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces on this kernel: {probe.stderr.decode().strip()}"
    try:
        JobsCgroupTree(Path("/sys/fs/cgroup/qrad-probe"))
    except Exception as exc:  # noqa: BLE001 - any reason is a skip reason
        return f"no usable cgroup hierarchy: {exc}"
    return None


_REASON = _why_no_sandbox()


def numpy_runtime() -> tuple[Path, list[RuntimeBind], dict[str, str]]:
    """The interpreter the jobs use here: Debian's python3 with the venv's numpy (same CPython 3.11 ABI)."""
    np_dir = Path(numpy.__file__).parent
    binds = [RuntimeBind(host=np_dir, sandbox=Path("/opt/pylib/numpy"))]
    if (np_dir.parent / "numpy.libs").is_dir():
        binds.append(RuntimeBind(host=np_dir.parent / "numpy.libs", sandbox=Path("/opt/pylib/numpy.libs")))
    return SYSTEM_PYTHON, binds, {"PYTHONPATH": "/opt/pylib"}


def system_python_ok() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True)
    return out.stdout.strip() == str(sys.version_info[:2])


def make_cfg(base: Path, key: Ed25519PrivateKey | None, **over) -> JobsConfig:
    python, runtime, env = numpy_runtime()
    pub = None
    if key is not None:
        pub = base / "platform.pub"
        pub.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    fields = dict(jobs_dir=base / "jobs", cgroup=Path(f"/sys/fs/cgroup/qrad-test-{base.name[-8:]}"),
                  public_key=pub, python=python, runtime=runtime, env=env, poll_s=0.05,
                  checkpoint_grace_s=5.0, max_pids=256, disk_reserve_mb=16)
    fields.update(over)
    return JobsConfig(**fields)


def remove_tree(tree: JobsCgroupTree) -> None:
    try:
        tree.thaw()
    except Exception:  # noqa: BLE001 - best effort in teardown
        pass
    for d in set(tree.dirs.values()):
        for child in d.glob("job-*"):
            child.rmdir()
        if d.exists():
            d.rmdir()


class RunnerHarness:
    """A runner with its ``run`` task, helpers to submit bundles and wait for their end."""

    def __init__(self, runner: JobRunner, base: Path, key: Ed25519PrivateKey | None) -> None:
        self.runner, self.base, self.key = runner, base, key
        self._n = 0

    def script_bundle(self, code: str, job_id: str | None = None, sign: bool = True, args=(), **limits) -> Path:
        self._n += 1
        job_id = job_id or f"job{self._n}"
        d = self.base / "bundles" / f"{job_id}-{self._n}"
        d.mkdir(parents=True)
        (d / "job.py").write_text(code)
        replay = replay_fields([DEVICE_ID]) if sign and self.key is not None else {}
        write_manifest(d, {"id": job_id, "command": ["python3", "job.py", *args], **replay, **limits})
        if sign and self.key is not None:
            sign_manifest(d, self.key)
        return d

    def submit(self, bundle: Path) -> JobRecord:
        return self.runner.submit(bundle)

    async def wait(self, job_id: str, timeout: float = 20.0, until=lambda r: r.status.terminal) -> JobRecord:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = self.runner.get(job_id)
            if record is not None and until(record):
                return record
            if loop.time() > deadline:
                raise AssertionError(f"job {job_id} still {record and record.status} after {timeout} s")
            await asyncio.sleep(0.05)

    async def run(self, code: str, timeout: float = 20.0, **limits) -> tuple[JobRecord, dict | None]:
        record = self.submit(self.script_bundle(code, **limits))
        record = await self.wait(record.id, timeout)
        return record, self.result(record.id)

    def result(self, job_id: str) -> dict | None:
        lines = self.stdout(job_id).strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None

    def stdout(self, job_id: str) -> str:
        return self.runner.store.tail(job_id, "stdout", 1 << 16)


async def start_harness(base: Path, key, **over) -> tuple[RunnerHarness, asyncio.Task]:
    runner = JobRunner(make_cfg(base, key, **over), device_id=DEVICE_ID)
    runner.setup()
    task = asyncio.create_task(runner.run(), name="jobs")
    return RunnerHarness(runner, base, key), task


async def stop_harness(harness: RunnerHarness, task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    tree = harness.runner.tree
    leftovers = tree.leftovers()
    remove_tree(tree)
    assert not leftovers, f"job cgroups left behind: {leftovers}"
