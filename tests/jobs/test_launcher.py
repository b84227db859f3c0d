"""The privileged launcher as its own service: jobs run through it, and it refuses what it must.

A real `LauncherServer` on a Unix socket (in a thread of this process, as root), a real runner configured
with ``launcher_socket``, real sandboxes; a second uid for the peer check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading

import pytest

from jobs_helpers import DEVICE_ID, RunnerHarness, make_cfg, remove_tree
from qrad_agent.jobs.launcher import Launcher, LauncherError, LauncherServer, RemoteLauncher
from qrad_agent.jobs.model import Status
from qrad_agent.jobs.runner import JobRunner


@pytest.fixture
def launcher_service(base_dir, signing_key):
    """(server, socket path) serving a Launcher built from the same jobs config as the runner's."""
    sock = base_dir / "launcher.sock"
    server = LauncherServer(Launcher(make_cfg(base_dir, signing_key)), sock)
    server.launcher.setup()
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, sock
    server.close()
    thread.join(5)


@pytest.fixture
async def remote(base_dir, signing_key, launcher_service):
    _, sock = launcher_service
    runner = JobRunner(make_cfg(base_dir, signing_key, launcher_socket=sock), device_id=DEVICE_ID)
    assert isinstance(runner.launcher, RemoteLauncher)
    runner.setup()
    task = asyncio.create_task(runner.run(), name="jobs")
    yield RunnerHarness(runner, base_dir, signing_key)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    leftovers = runner.tree.leftovers()
    remove_tree(runner.tree)
    assert not leftovers, leftovers


async def test_jobs_run_and_cancel_through_the_launcher_service(remote):
    record, result = await remote.run("import json, os; print(json.dumps({'uid': os.getuid(), 'ok': 1}))")
    assert record.status == Status.SUCCEEDED, remote.runner.store.tail(record.id, "stderr")
    assert result == {"uid": 1000, "ok": 1}  # the sandbox's own uid, as without the service
    work = remote.runner.store.work_dir(record.id)
    assert work.stat().st_uid == 0, "the finished job's directory is taken back from the job user"
    assert remote.runner.ack(record.id)
    await remote.runner.deletions_done()  # its filesystem is unmounted off the loop, then its files go
    assert not work.exists()

    slow = remote.submit(remote.script_bundle("import time\nwhile True: time.sleep(0.1)", grace_s=1.0))
    await remote.wait(slow.id, until=lambda r: r.status == Status.RUNNING)
    assert remote.runner.cancel(slow.id)
    ended = await remote.wait(slow.id, timeout=10)
    assert ended.status == Status.CANCELLED


async def test_output_limit_is_enforced_through_the_service(remote):
    code = "with open('big', 'wb') as f:\n    for _ in range(64):\n        f.write(b'x' * (1 << 20)); f.flush()"
    record, _ = await remote.run(code, output_mb=2)
    assert record.status == Status.KILLED_OUTPUT, record


async def test_deep_tree_and_inodes_counted_and_cut_through_the_service(remote):
    """The service walks the job's tree (usage, reclaim) without recursion: a 1 100-level tree is stopped,
    cut at the depth bound by the launcher, and the rest deleted by the agent on ack."""
    code = ("import os\nfd = os.open('.', os.O_RDONLY)\nfor i in range(1100):\n    os.mkdir('d', dir_fd=fd)\n"
            "    n = os.open('d', os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = n\n"
            "import time\ntime.sleep(30)\n")
    record, _ = await remote.run(code, timeout=30)
    assert record.status == Status.KILLED_OUTPUT and record.reason == "output_depth", record
    assert record.usage.output_inodes >= 60
    result = await asyncio.to_thread(remote.runner.result_summary, record.id)
    assert result["status"] == "killed_output"
    assert remote.runner.ack(record.id)
    await remote.runner.deletions_done()  # its filesystem is unmounted off the loop, then its files go
    assert not remote.runner.store.job_dir(record.id).exists()


def test_launcher_refuses_bad_ids_links_and_limits(launcher_service, base_dir, tmp_path):
    server, sock = launcher_service
    client = RemoteLauncher(server.launcher.cfg, sock)
    with pytest.raises(LauncherError, match="bad job id"):
        client.prepare("../../etc")
    jobs = server.launcher.store.root
    victim = base_dir / "victim.txt"  # a root file outside the jobs directory
    victim.write_text("secret")
    (jobs / "linked" / "work").mkdir(parents=True)
    os.link(victim, jobs / "linked" / "work" / "shadow")
    with pytest.raises(LauncherError, match="hard links are refused"):
        client.prepare("linked")
    assert victim.stat().st_uid == 0
    (jobs / "symlinked").mkdir()
    (jobs / "symlinked" / "work").symlink_to(base_dir)
    with pytest.raises(LauncherError, match="not a directory"):
        client.prepare("symlinked")
    assert base_dir.stat().st_uid == 0
    with open(os.devnull, "wb") as out:
        with pytest.raises(LauncherError, match="cores"):
            client.spawn("linked", 0, 1 << 20, ["true"], out.fileno(), out.fileno())
        with pytest.raises(LauncherError, match="output_bytes"):
            client.spawn("linked", 1, 1 << 60, ["true"], out.fileno(), out.fileno())


def test_launcher_serves_only_allowed_uids(launcher_service):
    server, sock = launcher_service
    os.chmod(sock, 0o666)  # past the file mode, the SO_PEERCRED check must still refuse
    probe = ("import json, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); "
             f"s.connect({str(sock)!r}); s.send(json.dumps({{'op': 'setup'}}).encode()); print(s.recv(65536).decode())")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                          probe], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert '"ok": false' in out.stdout and "uid 65534 is not allowed" in out.stdout


async def test_a_vanished_agent_takes_its_job_with_it(remote):
    record = remote.submit(remote.script_bundle("import time\nwhile True: time.sleep(0.1)"))
    await remote.wait(record.id, until=lambda r: r.status == Status.RUNNING)
    active = remote.runner.active[record.id]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10  # RUNNING once spawned; its first process joins the cgroup just after
    while not active.cgroup.pids() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert active.cgroup.pids()
    active.proc._sock.close()  # as if the agent died: the service kills the job
    deadline = loop.time() + 5
    while active.cgroup.pids() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert not active.cgroup.pids()
    again = await remote.wait(record.id, timeout=15, until=lambda r: r.reason == "launcher_lost")
    assert not again.status.terminal  # infrastructure took it: queued again, not failed
    assert remote.runner.cancel(record.id)
    assert (await remote.wait(record.id, timeout=15)).status == Status.CANCELLED


async def test_jobs_wait_for_a_launcher_that_is_down(remote, launcher_service):
    server, sock = launcher_service
    server.close()
    record = remote.submit(remote.script_bundle("print('{\"ran\": 1}')"))
    assert record.status == Status.QUEUED  # kept: the bundle is not at fault
    await remote.wait(record.id, until=lambda r: r.reason == "launcher_unavailable")
    assert remote.runner.get(record.id).status == Status.QUEUED
    assert remote.runner.launcher_state().startswith("unreachable")
    back = LauncherServer(server.launcher, sock)
    back.bind()
    threading.Thread(target=back.serve_forever, daemon=True).start()
    try:
        done = await remote.wait(record.id, timeout=20)
        assert done.status == Status.SUCCEEDED and remote.result(record.id) == {"ran": 1}
        assert remote.runner.launcher_state() == "reachable"
    finally:
        back.close()
