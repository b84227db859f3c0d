"""Hostile job output (issue 13), each attack run as a real job in the real sandbox, then collected,
reported and deleted by the runner: nothing may raise, the result message always encodes and stays small,
the disk is counted as the filesystem counts it, and the next benign job succeeds."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from jobs_helpers import start_harness, stop_harness

from qrad_agent.jobs import jobfs, results
from qrad_agent.jobs.model import RejectReason, Status
from qrad_agent.sync.contract import JobStatusMessage, Kind, envelope_bytes

DEEP_TREE = """import os
fd = os.open(".", os.O_RDONLY)
for i in range(1100):
    os.mkdir("d", dir_fd=fd)
    n = os.open("d", os.O_RDONLY, dir_fd=fd)
    with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=n), "wb") as f:
        f.write(b"x" * 16000)
    os.close(fd)
    fd = n
print("{}")
"""

BAD_NAMES = r"""
open(b"bad\xffname.txt", "wb").write(b"1")
open(b"tab\tand\x1bescape", "wb").write(b"2")
open("back\\slash", "w").write("3")
open("caf\u00e9", "w").write("4")
print("{}")
"""

LONG_NAMES = """import os
for i in range(64):
    d = "/".join(f"{i:02d}" + "d" * 240 for _ in range(12))
    os.makedirs(d)
    open(os.path.join(d, "f" * 200), "w").write(str(i))
print("{}")
"""


def message_bytes(result: dict) -> bytes:
    """The result as the outbox would send it (raises if it cannot be encoded)."""
    body = JobStatusMessage(job_id="j", status="succeeded", result=result).model_dump(mode="json")
    return envelope_bytes("heater-1", 1, 0.0, Kind.JOB, body)


async def _next_benign_succeeds(h, job_id: str | None = None, **limits) -> None:
    after, out = await h.run("print('{\"ok\": 1}')", job_id=job_id or f"benign-{uuid.uuid4().hex[:6]}", **limits)
    assert after.status == Status.SUCCEEDED and out == {"ok": 1}


async def test_deep_tree_is_stopped_collected_reported_and_deleted(base_dir, signing_key):
    """1 100 levels of directories with a 16 kB file in each (22 MB) under a 2 MB output limit: stopped,
    its result built without recursion (also by a restarted runner), its files deleted on ack."""
    h, task = await start_harness(base_dir, signing_key)
    try:
        record, _ = await h.run(DEEP_TREE, output_mb=2)
        assert record.status == Status.KILLED_OUTPUT, (record, h.runner.store.tail(record.id, "stderr"))
        assert record.reason in ("output_depth", "killed_output")
        assert record.usage.output_bytes < 22_000_000
        result = await asyncio.to_thread(h.runner.result_summary, record.id)
        assert result["status"] == "killed_output" and len(message_bytes(result)) < results.MAX_RESULT_BYTES + 1024
        await _next_benign_succeeds(h)
    finally:
        await stop_harness(h, task)
    # the daemon restarted with this result unreported: it is built again at start, then acknowledged
    h, task = await start_harness(base_dir, signing_key)
    try:
        assert h.runner.get(record.id).status == Status.KILLED_OUTPUT
        result = await asyncio.to_thread(h.runner.result_summary, record.id)
        assert result["status"] == "killed_output" and message_bytes(result)
        assert h.runner.ack(record.id)
        await h.runner.deletions_done()  # its own filesystem is unmounted off the loop, then its files go
        assert not h.runner.store.job_dir(record.id).exists()
        await _next_benign_succeeds(h)
    finally:
        await stop_harness(h, task)


async def test_deep_tree_left_by_a_job_is_deleted_at_any_depth(harness):
    """Even a tree past the depth bound that reached the job's directory (made here by root, as a job that
    finished between two polls would leave it) is collected and deleted without RecursionError."""
    record, _ = await harness.run("print('{}')")
    work = harness.runner.store.work_dir(record.id)
    fd = os.open(work, os.O_RDONLY)
    for _ in range(1500):  # past the interpreter's recursion limit (1000)
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("deepest", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
        f.write(b"x")
    os.close(fd)
    result = await asyncio.to_thread(harness.runner.result_summary, record.id)
    assert "deeper than the depth bound" in result["truncated"]
    assert harness.runner.ack(record.id)
    await harness.runner.deletions_done()  # its filesystem is unmounted off the loop, then its files go
    assert not harness.runner.store.job_dir(record.id).exists()


async def test_non_utf8_and_control_names_are_escaped_and_flagged(harness):
    record, _ = await harness.run(BAD_NAMES)
    assert record.status == Status.SUCCEEDED, harness.runner.store.tail(record.id, "stderr")
    result = await asyncio.to_thread(harness.runner.result_summary, record.id)
    outputs = result["outputs"]
    assert outputs["bad\\xffname.txt"]["escaped"] is True and outputs["bad\\xffname.txt"]["bytes"] == 1
    assert outputs["tab\\x09and\\x1bescape"]["escaped"] is True
    assert "back\\\\slash" in outputs and "escaped" not in outputs["back\\\\slash"]  # never collides
    assert "caf\u00e9" in outputs and "escaped" not in outputs["caf\u00e9"]
    assert "not UTF-8" in result["truncated"]
    wire = json.loads(message_bytes(result))  # encodes, and decodes back to the same names
    assert "bad\\xffname.txt" in wire["body"]["result"]["outputs"]
    assert harness.runner.ack(record.id)
    await _next_benign_succeeds(harness)


async def test_many_long_names_give_a_bounded_result(harness):
    """64 files under 3 kB paths used to make a 0.73 MB result that the broker refused."""
    record, _ = await harness.run(LONG_NAMES)
    assert record.status == Status.SUCCEEDED, harness.runner.store.tail(record.id, "stderr")
    result = await asyncio.to_thread(harness.runner.result_summary, record.id)
    size = len(message_bytes(result))
    assert size <= results.MAX_RESULT_BYTES + 1024, size
    assert result["outputs_total"] == 64 and result["outputs_omitted"] == 64 - len(result["outputs"]) > 0
    assert result["truncated"] and all(len(p) <= results.MAX_PATH_CHARS + 8 for p in result["outputs"])
    assert harness.runner.ack(record.id)


FALLOCATE = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("prealloc", os.O_WRONLY | os.O_CREAT, 0o600)
for i in range(8):  # FALLOC_FL_KEEP_SIZE: st_size stays 0; 1 MiB at a time, so a 2 MiB filesystem fills
    rc = libc.fallocate(fd, 1, ctypes.c_long(i << 20), ctypes.c_long(1 << 20))
    print(rc, ctypes.get_errno(), os.fstat(fd).st_size, flush=True)
import time
time.sleep(30)
"""


@pytest.mark.parametrize("how", ["fallocate_keep_size", "one_byte_files"])
async def test_allocated_blocks_are_counted_not_sizes(harness, how):
    """st_size says 0 (preallocated with KEEP_SIZE) or 1 byte a file; the blocks they take are counted."""
    code = {"fallocate_keep_size": FALLOCATE,
            "one_byte_files": "import time\nfor i in range(1500):\n    open(f'f{i}', 'wb').write(b'x')\n"
                              "time.sleep(30)\n"}[how]
    record, _ = await harness.run(code, output_mb=2, timeout=30)
    if how == "fallocate_keep_size":
        first = harness.stdout(record.id).split()
        if first and first[0] != "0" and first[1] != str(errno.ENOSPC):
            pytest.skip(f"fallocate not available to jobs here: errno {first[1]}")
    assert record.status == Status.KILLED_OUTPUT, (record, harness.runner.store.tail(record.id, "stderr"))
    assert record.usage.wall_s < 20
    if harness.runner.disk_limits == "kernel":  # its own 2 MiB filesystem filled: ENOSPC, never more
        assert record.reason == "output_full" and "ENOSPC" in record.detail, record
        # its limit, the full margin, the image's rounding and its stdout's blocks
        assert (1 << 20) < record.usage.output_bytes <= (2 << 20) + jobfs.FULL_BYTES + (24 << 10), record.usage
    else:
        assert record.usage.output_bytes >= 2 << 20
    await _next_benign_succeeds(harness)


async def test_empty_files_are_limited_by_inodes(base_dir, signing_key):
    h, task = await start_harness(base_dir, signing_key, max_output_inodes=500)
    try:
        record, _ = await h.run("import time\nfor i in range(100000):\n    open(f'e{i}', 'w').close()\n"
                                "time.sleep(30)\n", timeout=30)
        assert record.status == Status.KILLED_OUTPUT and record.reason == "output_inodes", record
        assert record.usage.output_inodes >= 500 and record.usage.output_bytes < 1 << 20
        if h.runner.disk_limits == "kernel":  # its own filesystem's inodes: the output stays for the result
            assert "ENOSPC" in record.detail and h.runner.result_summary(record.id)["outputs_total"] >= 500
        else:
            assert not h.runner.store.work_dir(record.id).exists()  # its inodes are given back
        await _next_benign_succeeds(h)
    finally:
        await stop_harness(h, task)


@pytest.fixture
def small_fs():
    """A real filesystem with few inodes (tmpfs, nr_inodes=400) for the jobs directory."""
    mount = Path(f"/tmp/qrad-smallfs-{uuid.uuid4().hex[:8]}")
    mount.mkdir(mode=0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=400,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    for point in jobfs.mounts_under(mount):
        subprocess.run(["umount", "-l", str(point)], check=False)
    subprocess.run(["umount", "-l", str(mount)], check=False)
    mount.rmdir()


def _fill_inodes(directory: Path) -> int:
    directory.mkdir()
    n = 0
    while True:
        try:
            (directory / f"i{n}").touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return n
        n += 1


async def test_no_free_inodes_refuses_submit_plainly_and_status_writes_fail_soft(small_fs, base_dir,
                                                                                   signing_key):
    h, task = await start_harness(small_fs, signing_key, inode_reserve=50)
    try:
        bundle = h.script_bundle("print('{}')")  # under small_fs/bundles, made while inodes are left
        queued = h.submit(h.script_bundle("import time\ntime.sleep(30)", output_mb=4))  # its image fits
        await h.wait(queued.id, until=lambda r: r.status == Status.RUNNING)
        assert _fill_inodes(small_fs / "filler") > 0
        record = h.submit(bundle)
        assert record.status == Status.REJECTED and record.reason == RejectReason.NO_SPACE.value, record
        assert "inodes" in record.detail
        assert "inodes" in h.runner.status()["below_reserve"]  # and no job starts meanwhile
        # the CLI's submit: a clear refusal and exit 73, no traceback
        cfg_json = base_dir / "jobs-cfg.json"
        cfg_json.write_text(h.runner.cfg.model_dump_json())
        script = ("import sys, types; from qrad_agent.jobs.config import JobsConfig; "
                  "from qrad_agent.jobs.cli import cmd_submit; "
                  f"cfg = JobsConfig.model_validate_json(open({str(cfg_json)!r}).read()); "
                  f"sys.exit(cmd_submit(types.SimpleNamespace(bundle={str(bundle)!r}, wait=0), cfg))")
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], capture_output=True,
                                       text=True, check=False)
        assert done.returncode == 73 and "Traceback" not in done.stderr, done.stderr
        assert "no space left" in done.stderr and "inodes" in done.stderr
        # the running job ends while no status file can be written: the runner keeps going
        assert h.runner.cancel(queued.id)
        ended = await h.wait(queued.id)
        assert ended.status == Status.CANCELLED
        assert h.runner.status()["jobs"]["cancelled"] == 1
        for p in (small_fs / "filler").iterdir():
            p.unlink()
        await _next_benign_succeeds(h, output_mb=4)
    finally:
        await stop_harness(h, task)



async def test_files_being_deleted_when_the_agent_stops_are_deleted_at_the_next_start(base_dir, signing_key):
    """Deleting tens of thousands of files runs off the event loop; what a crash interrupts (the renamed-aside
    ``.trash-*`` directory) is never taken for a job and is deleted at the next start."""
    h, task = await start_harness(base_dir, signing_key)
    try:
        record, _ = await h.run("for i in range(300):\n    open(f'e{i}', 'w').close()\nprint('{}')")
        assert record.status == Status.SUCCEEDED
        assert h.runner.ack(record.id)
        await h.runner.deletions_done()  # its filesystem is unmounted off the loop, then its files go
        assert not h.runner.store.job_dir(record.id).exists()
        assert not list(h.runner.store.root.glob(".trash-*"))
        crashed = h.runner.store.root / ".trash-crashed"  # as a crash mid-deletion leaves it
        (crashed / "work").mkdir(parents=True)
        (crashed / "status.json").write_text(record.model_dump_json())
    finally:
        await stop_harness(h, task)
    h, task = await start_harness(base_dir, signing_key)
    try:
        assert record.id not in h.runner.records and not crashed.exists()
    finally:
        await stop_harness(h, task)


async def test_deep_bundles_are_refused(harness):
    """A bundle (directory or archive) nested past bundle.MAX_BUNDLE_DEPTH is refused plainly, before it is
    copied whole or extracted."""
    import tarfile

    from qrad_agent.jobs.bundle import MAX_BUNDLE_DEPTH

    as_dir = harness.script_bundle("print('{}')", job_id="deep-dir")
    nested = as_dir.joinpath(*["n"] * (MAX_BUNDLE_DEPTH + 5))
    nested.mkdir(parents=True)
    (nested / "x").write_text("x")
    record = harness.submit(as_dir)
    assert record.status == Status.REJECTED and record.reason == "bad_bundle" and "deeper" in record.detail
    as_tar = harness.script_bundle("print('{}')", job_id="deep-tar")
    archive = harness.base / "deep.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(as_tar.iterdir()):
            tar.add(path, arcname=path.name)
        info = tarfile.TarInfo("/".join(["n"] * 1500) + "/x")
        tar.addfile(info)
    record = harness.submit(archive)
    assert record.status == Status.REJECTED and record.reason == "bad_bundle" and "deeper" in record.detail
    await _next_benign_succeeds(harness)
