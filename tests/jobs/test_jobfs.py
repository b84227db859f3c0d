"""Each job writes in a filesystem of its own (qrad_agent/jobs/jobfs.py): the kernel, not the runner's polling,
keeps its size and inode limits. Hostile jobs fill theirs with 1-byte files, empty files and fallocate
KEEP_SIZE as fast as they can and report what they managed; the agent's own filesystem, its status writes and
the next job are not touched, and the result names the limit hit. Mounts and images are removed with the
job's files, and what a crash leaves is cleaned at the next start; the launcher in a mount namespace of its
own (as under systemd) still serves the results."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_helpers import DEVICE_ID, RunnerHarness, make_cfg, remove_tree, start_harness, stop_harness

from qrad_agent.jobs import jobfs
from qrad_agent.jobs.model import Status
from qrad_agent.jobs.runner import JobRunner

AGENT = str(Path(sys.executable).with_name("qrad-agent"))

# Each writes until the kernel refuses, then prints what it made and how much its files take (st_blocks).
HOSTILE = {
    "one_byte_files": """
import errno, json, os
n, err = 0, None
while True:
    try:
        with open(f"f{n}", "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        err = exc.errno
        break
    n += 1
""",
    "empty_files": """
import json, os
n, err = 0, None
while True:
    try:
        os.close(os.open(f"e{n}", os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        err = exc.errno
        break
    n += 1
""",
    "fallocate_keep_size": """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("prealloc", os.O_WRONLY | os.O_CREAT, 0o600)
n, err = 0, None
while True:  # FALLOC_FL_KEEP_SIZE, 256 KiB at a time: st_size stays 0
    if libc.fallocate(fd, 1, ctypes.c_long(n << 18), ctypes.c_long(1 << 18)) != 0:
        err = ctypes.get_errno()
        break
    n += 1
""",
}
IGNORE_TERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopped when full: report first\n"
REPORT = """
used = inodes = 0
for e in os.scandir("."):
    used += e.stat(follow_symlinks=False).st_blocks * 512
    inodes += 1
print(json.dumps({"made": n, "errno": err, "bytes": used, "inodes": inodes}), flush=True)
"""
OUTPUT_MB = 2
INODES = {"one_byte_files": 2000, "empty_files": 300, "fallocate_keep_size": 300}
"""max_output_inodes: 2 000 4-KiB blocks are more than 2 MiB, so the 1-byte files meet the size limit."""


def _kernel_or_skip(runner: JobRunner) -> None:
    if runner.disk_limits != "kernel":
        pytest.skip(f"no filesystem per job here: {runner.disk_limits}")


@pytest.mark.parametrize("how", sorted(HOSTILE))
async def test_a_job_cannot_write_past_its_own_filesystem(base_dir, signing_key, how, capsys):
    inodes = INODES[how]
    h, task = await start_harness(base_dir, signing_key, max_output_inodes=inodes)
    try:
        _kernel_or_skip(h.runner)
        record, made = await h.run(IGNORE_TERM + HOSTILE[how] + REPORT, output_mb=OUTPUT_MB, timeout=60)
        assert made is not None, h.runner.store.tail(record.id, "stderr")
        with capsys.disabled():
            print(f"\n{how}: the job made {made['made']} before errno {made['errno']}; its files take "
                  f"{made['bytes']} bytes, {made['inodes']} inodes; limits {OUTPUT_MB << 20} bytes, {inodes} inodes")
        assert made["errno"] == errno.ENOSPC  # the kernel said no
        # its limit, the margin of a full filesystem, the image size's rounding and job.py's block
        assert made["bytes"] <= (OUTPUT_MB << 20) + jobfs.FULL_BYTES + (16 << 10) + 4096
        assert made["inodes"] <= inodes + 16
        assert record.status == Status.KILLED_OUTPUT and record.disk_limits == "kernel", record
        if how == "empty_files":
            assert record.reason == "output_inodes" and "ENOSPC" in record.detail, record
            assert made["inodes"] >= inodes - 16
        else:
            assert record.reason == "output_full" and "ENOSPC" in record.detail, record
            assert made["bytes"] >= (OUTPUT_MB << 20) - (256 << 10)
        # the agent's filesystem pays only the image, preallocated before the job ran (a loop device never
        # writes past its file's end): one inode and a bounded size
        image = os.stat(h.runner.store.job_dir(record.id) / jobfs.IMAGE_NAME)
        assert image.st_blocks * 512 >= image.st_size <= (OUTPUT_MB << 20) + inodes * 256 + (8 << 20)
        result = h.runner.result_summary(record.id)
        assert result["reason"] == record.reason and result["disk_limits"] == "kernel", result
        assert "ENOSPC" in result["detail"]
        # the agent goes on: its status writes succeed, and the next job runs
        assert h.runner.store.save(record)
        # another job, with the first one's full filesystem still mounted, writes its own 1 MiB
        after, out = await h.run("open('data', 'wb').write(b'x' * (1 << 20))\nprint('{\"ok\": 1}')",
                                 output_mb=OUTPUT_MB)
        assert after.status == Status.SUCCEEDED and out == {"ok": 1}
        for job_id in (record.id, after.id):
            assert h.runner.ack(job_id)
        await h.runner.deletions_done()
        assert jobfs.mounts_under(base_dir) == [] and not list(h.runner.store.root.glob("*/work.img"))
    finally:
        await stop_harness(h, task)


async def test_outputs_kept_across_a_restart_and_stale_mounts_cleaned(base_dir, signing_key):
    """A result waiting for the platform survives a restart that lost its mount; a job whose deletion a
    crash interrupted leaves no mount, no image."""
    h, task = await start_harness(base_dir, signing_key)
    try:
        _kernel_or_skip(h.runner)
        kept, _ = await h.run("open('answer.txt', 'w').write('42')\n", output_mb=4)
        gone, _ = await h.run("open('x', 'w').write('1')\n", output_mb=4)
        assert kept.status == gone.status == Status.SUCCEEDED
    finally:
        await stop_harness(h, task)
    root = h.runner.store.root
    assert set(jobfs.mounts_under(base_dir)) == {root / kept.id / "work", root / gone.id / "work"}
    subprocess.run(["umount", str(root / kept.id / "work")], check=True)  # a launcher restart loses its mounts
    os.rename(root / gone.id, root / ".trash-crashed")  # a crash in the middle of deleting a job's files

    h, task = await start_harness(base_dir, signing_key)
    try:
        assert not (root / ".trash-crashed").exists()
        assert root / ".trash-crashed" / "work" not in jobfs.mounts_under(base_dir)
        result = h.runner.result_summary(kept.id)
        assert set(result["outputs"]) == {"answer.txt"}, result
        assert jobfs.mounts_under(base_dir) == [root / kept.id / "work"]
        assert h.runner.ack(kept.id)
        await h.runner.deletions_done()
        assert jobfs.mounts_under(base_dir) == [] and not (root / kept.id).exists()
    finally:
        await stop_harness(h, task)


def _launcher_config(base: Path, cfg) -> Path:
    binds = ", ".join(f'{{ host = "{b.host}", sandbox = "{b.sandbox}" }}' for b in cfg.runtime)
    env = ", ".join(f'{k} = "{v}"' for k, v in cfg.env.items())
    path = base / "launcher.toml"
    path.write_text(f"""
device_id = "{DEVICE_ID}"
state_dir = "{base}/state"
[jobs]
jobs_dir = "{cfg.jobs_dir}"
cgroup = "{cfg.cgroup}"
launcher_socket = "{cfg.launcher_socket}"
python = "{cfg.python}"
runtime = [{binds}]
env = {{ {env} }}
public_key = "{cfg.public_key}"
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
""")
    return path


def _start_launcher(base: Path, config: Path, sock: Path) -> subprocess.Popen:
    """`qrad-agent launcher` in a private mount namespace: its mounts are not seen here (systemd's too)."""
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", AGENT, "launcher", "--config",
                             str(config)], stderr=(base / "launcher.log").open("a"))
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, (base / "launcher.log").read_text()
        time.sleep(0.05)
    return proc


@pytest.mark.slow
async def test_launcher_in_its_own_mount_namespace_serves_results(base_dir, signing_key):
    """As under systemd, the launcher's mounts do not reach the agent: the agent reads a job's files through
    the descriptor the launcher hands it, and a restarted launcher mounts a kept result again."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount not possible here")
    sock = base_dir / "launcher" / "launcher.sock"
    cfg = make_cfg(base_dir, signing_key, launcher_socket=sock)
    config = _launcher_config(base_dir, cfg)
    launcher = _start_launcher(base_dir, config, sock)
    runner = JobRunner(cfg, device_id=DEVICE_ID)
    task = None
    try:
        runner.setup()
        assert runner.disk_limits == "kernel", runner.disk_limits
        task = asyncio.create_task(runner.run(), name="jobs")
        h = RunnerHarness(runner, base_dir, signing_key)
        record, _ = await h.run("open('answer.txt', 'w').write('42')\n", output_mb=4)
        assert record.status == Status.SUCCEEDED and record.disk_limits == "kernel", record
        work = runner.store.work_dir(record.id)
        assert not jobfs.is_mounted(work) and list(work.iterdir()) == []  # not visible from here
        assert set(runner.result_summary(record.id)["outputs"]) == {"answer.txt"}
        launcher.send_signal(signal.SIGKILL)  # its namespace, and the mount, go with it
        launcher.wait()
        launcher = _start_launcher(base_dir, config, sock)
        assert set(runner.result_summary(record.id)["outputs"]) == {"answer.txt"}
        assert runner.ack(record.id)
        await runner.deletions_done()
        assert not (runner.store.job_dir(record.id)).exists()
    finally:
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        launcher.send_signal(signal.SIGTERM)
        try:
            assert launcher.wait(timeout=15) == 0
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
            remove_tree(runner.tree)


async def test_without_loop_mounts_jobs_run_degraded_and_say_so(base_dir, signing_key):
    """The documented fallback, forced: no filesystem per job, the runner's polling keeps the limits, and the
    status and every result name the degraded mode and why."""
    h, task = await start_harness(base_dir, signing_key, max_output_inodes=300)
    try:
        h.runner.launcher.fs_reason = "forced by the test"  # as when the probe at setup fails
        assert h.runner.status()["disk_limits"] == "user_space: forced by the test"
        record, _ = await h.run("import time\nfor i in range(100000):\n    open(f'e{i}', 'w').close()\n"
                                "time.sleep(30)\n", timeout=30)
        assert record.status == Status.KILLED_OUTPUT and record.reason == "output_inodes", record
        assert record.disk_limits == "user_space: forced by the test" and record.usage.output_inodes >= 300
        assert not (h.runner.store.job_dir(record.id) / jobfs.IMAGE_NAME).exists()
        assert jobfs.mounts_under(base_dir) == []
        assert h.runner.result_summary(record.id)["disk_limits"] == "user_space: forced by the test"
    finally:
        await stop_harness(h, task)
