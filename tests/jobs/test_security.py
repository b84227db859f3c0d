"""Each test: a real sandboxed process tries to get out and fails (issue 4, "Security tests")."""

from __future__ import annotations

import os
import socket
import time

import pytest

from jobs_helpers import start_harness, stop_harness
from qrad_agent.jobs.model import Status

PROBE = '''
import ctypes, errno, json, os, resource, socket, sys
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
    except Exception as e:
        out[name] = type(e).__name__
'''


def _listener(port: int) -> socket.socket | None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None  # taken: mosquitto (or another broker) already listens there
    s.listen()
    return s


async def test_network_unreachable_broker_and_internet(harness):
    own = _listener(0)
    broker = _listener(1883)
    port = own.getsockname()[1]
    with socket.create_connection(("127.0.0.1", 1883), timeout=1):
        pass  # the host reaches the broker port: the sandbox must not
    code = PROBE + f'''
for name, addr in {{"broker": ("127.0.0.1", 1883), "host_port": ("127.0.0.1", {port}),
                    "internet": ("1.1.1.1", 53), "gateway": ("10.0.2.2", 22)}}.items():
    attempt(name, lambda: socket.create_connection(addr, timeout=1).close())
attempt("dns", lambda: socket.getaddrinfo("example.com", 80))
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
print(json.dumps(out))
'''
    try:
        record, out = await harness.run(code)
    finally:
        own.close()
        if broker:
            broker.close()
    assert record.status == Status.SUCCEEDED, harness.stdout(record.id)
    assert out["interfaces"] == ["lo"]
    assert out["broker"] == out["host_port"] == "ECONNREFUSED"
    assert out["internet"] == out["gateway"] == "ENETUNREACH"
    assert out["dns"] != "ok"


async def test_cannot_read_agent_secrets_shadow_or_other_jobs(harness, base_dir):
    secret = base_dir / "agent.toml"
    secret.write_text('password = "hunter2"\n')
    first, _ = await harness.run('open("mine.txt", "w").write("job one private data")\nprint("{}")')
    assert first.status == Status.SUCCEEDED
    other = harness.runner.store.work_dir(first.id) / "mine.txt"
    assert other.exists()
    paths = [str(secret), "/etc/shadow", "/etc/qrad-agent/agent.toml", "/var/lib/qrad-agent/state.json",
             str(other), str(harness.runner.cfg.public_key), "/root/.ssh/id_ed25519", "/home"]
    code = PROBE + f'''
for p in {paths!r}:
    attempt(p, lambda: open(p).read() if not os.path.isdir(p) else os.listdir(p))
out["root"] = sorted(os.listdir("/"))
print(json.dumps(out))
'''
    record, out = await harness.run(code)
    assert record.status == Status.SUCCEEDED
    for p in paths:
        assert out[p] == "ENOENT", (p, out[p])
    assert out["root"] == sorted(["bin", "dev", "etc", "job", "lib", "lib64", "opt", "proc", "sbin", "tmp",
                                  "usr"] + (["lib32"] if os.path.islink("/lib32") else []))


async def test_cannot_write_outside_its_directory(harness):
    code = PROBE + '''
for p in ["/usr/evil", "/etc/evil", "/evil", "/opt/pylib/evil", "/proc/sys/kernel/hostname"]:
    attempt(p, lambda: open(p, "w").write("x"))
attempt("job", lambda: open("/job/ok", "w").write("x"))
attempt("tmp", lambda: open("/tmp/ok", "w").write("x"))
print(json.dumps(out))
'''
    record, out = await harness.run(code)
    assert record.status == Status.SUCCEEDED
    assert out["job"] == out["tmp"] == "ok"
    for p in ["/usr/evil", "/etc/evil", "/evil", "/opt/pylib/evil", "/proc/sys/kernel/hostname"]:
        assert out[p] in ("EROFS", "EACCES", "EPERM", "ENOENT"), (p, out[p])
    assert not os.path.exists("/usr/evil") and not os.path.exists("/tmp/ok")


async def test_cannot_see_or_signal_agent_or_other_jobs(harness):
    sleeper = harness.submit(harness.script_bundle("import time\nprint('{}', flush=True)\ntime.sleep(30)"))
    # Ready when it has printed: its process is in the sandbox and its cgroup, not merely being spawned.
    await harness.wait(sleeper.id, until=lambda r: r.status == Status.RUNNING and harness.stdout(sleeper.id))
    victims = harness.runner.active[sleeper.id].cgroup.pids() + [os.getpid(), 1]
    code = PROBE + f'''
import signal
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
for pid in {victims!r}:
    attempt(str(pid), lambda: os.kill(pid, signal.SIGKILL) if pid != 1 else os.kill(pid, 0))
print(json.dumps(out))
'''
    record, out = await harness.run(code)
    assert record.status == Status.SUCCEEDED
    assert out["pids"] == [1, 2]  # bwrap's init and the job itself
    for pid in victims[:-1]:
        assert out[str(pid)] in ("ESRCH", "EPERM"), (pid, out)
    assert harness.runner.get(sleeper.id).status == Status.RUNNING  # the other job is untouched
    harness.runner.cancel(sleeper.id, grace_s=0)
    assert (await harness.wait(sleeper.id)).status == Status.CANCELLED


async def test_cannot_raise_limits_nor_use_denied_syscalls(harness):
    code = PROBE + '''
libc = ctypes.CDLL(None, use_errno=True)
def sysc(name, nr, *args):
    r = libc.syscall(nr, *args)
    out[name] = "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
import platform
N = {"x86_64": dict(ptrace=101, mount=165, bpf=321, perf_event_open=298, keyctl=250, unshare=272,
                    io_uring_setup=425, setns=308, kexec_load=246, init_module=175, clone3=435),
     "aarch64": dict(ptrace=117, mount=40, bpf=280, perf_event_open=241, keyctl=219, unshare=97,
                     io_uring_setup=425, setns=268, kexec_load=104, init_module=105, clone3=435)}[platform.machine()]
sysc("ptrace", N["ptrace"], 0, 0, 0, 0)                      # PTRACE_TRACEME: allowed without the filter
sysc("keyctl", N["keyctl"], 0, -2 & 0xffffffff, 0)           # GET_KEYRING_ID: allowed without the filter
sysc("unshare", N["unshare"], 0x10000000)                     # CLONE_NEWUSER
sysc("mount", N["mount"], b"none", b"/tmp", b"tmpfs", 0, 0)
sysc("bpf", N["bpf"], 0, 0, 0)
sysc("perf_event_open", N["perf_event_open"], 0, 0, -1, -1, 0)
sysc("io_uring_setup", N["io_uring_setup"], 1, 0)
sysc("setns", N["setns"], 0, 0)
sysc("kexec_load", N["kexec_load"], 0, 0, 0, 0)
sysc("init_module", N["init_module"], 0, 0, b"")
sysc("clone3", N["clone3"], 0, 0)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
out["fsize"] = hard
attempt("raise_fsize", lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (hard * 2, hard * 2)))
attempt("raise_nofile", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20)))
attempt("cgroupfs", lambda: os.listdir("/sys/fs/cgroup"))
out["core"] = resource.getrlimit(resource.RLIMIT_CORE)
out["fork"] = "ok" if os.fork() or os._exit(0) else "?"
out["uid"] = os.getuid()
status = open("/proc/self/status").read()
out["caps"] = [l.split()[1] for l in status.splitlines() if l.startswith(("CapEff", "CapBnd"))]
out["nnp"] = [l.split()[1] for l in status.splitlines() if l.startswith("NoNewPrivs")][0]
out["seccomp"] = [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp:")][0]
print(json.dumps(out))
'''
    record, out = await harness.run(code, output_mb=4)
    assert record.status == Status.SUCCEEDED, harness.stdout(record.id)
    for name in ("ptrace", "keyctl", "unshare", "mount", "bpf", "perf_event_open", "io_uring_setup", "setns",
                 "kexec_load", "init_module"):
        assert out[name] == "EPERM", (name, out[name])
    assert out["clone3"] == "ENOSYS" and out["fork"] == "ok"
    assert out["fsize"] == 4 << 20 and out["raise_fsize"] in ("ValueError", "EPERM")
    assert out["raise_nofile"] in ("ValueError", "EPERM")
    assert out["cgroupfs"] == "ENOENT" and out["core"] == [0, 0]
    assert out["caps"] == ["0000000000000000", "0000000000000000"] and out["nnp"] == "1" and out["seccomp"] == "2"
    assert out["uid"] == 1000


async def test_fork_bomb_stopped_by_pids(harness):
    code = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    record = harness.submit(harness.script_bundle(code, pids=32, walltime_s=2))
    await harness.wait(record.id, until=lambda r: r.status == Status.RUNNING)
    active = harness.runner.active.get(record.id)
    assert active is not None
    await harness.wait(record.id, until=lambda r: active.cgroup.pids_limit_hits() > 0)  # the bomb hit the limit
    assert len(active.cgroup.pids()) <= 32
    assert os.fork() or os._exit(0)  # the host still forks
    record = await harness.wait(record.id)
    assert record.status == Status.KILLED_WALLTIME
    assert record.usage.pids_limit_hits > 0


async def test_memory_hog_killed_agent_and_other_jobs_unharmed(harness):
    bystander = harness.submit(harness.script_bundle("import time\ntime.sleep(2)\nprint('{\"alive\": 1}')"))
    hog = harness.submit(harness.script_bundle(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))\n", memory_mb=64))
    hog = await harness.wait(hog.id)
    assert hog.status == Status.KILLED_MEMORY and hog.usage.oom_kills >= 1
    assert hog.usage.memory_peak_bytes <= 64 << 20
    bystander = await harness.wait(bystander.id)
    assert bystander.status == Status.SUCCEEDED and harness.result(bystander.id) == {"alive": 1}


@pytest.mark.parametrize("how", ["one_file", "many_files", "stdout"])
async def test_disk_filler_stopped(harness, how):
    code = {"one_file": "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 65536)\n",
            "many_files": "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * 500_000)\n    i += 1\n",
            "stdout": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"}[how]
    record, _ = await harness.run(code, output_mb=2)
    stderr = harness.runner.store.tail(record.id, "stderr")
    if harness.runner.disk_limits == "kernel" and how == "many_files":
        # its own filesystem: the kernel refused the write that would pass the limit (a 500 kB write can be
        # refused whole, leaving the job under its limit, so it may end as its own failure, ENOSPC)
        assert record.status in (Status.KILLED_OUTPUT, Status.FAILED), record
        assert record.status == Status.KILLED_OUTPUT or "No space left on device" in stderr, stderr
        assert record.usage.output_bytes <= (2 << 20) + (128 << 10)
        return
    assert record.status == Status.KILLED_OUTPUT, (record, stderr)
    if how != "many_files":
        assert record.usage.output_bytes <= 3 << 20  # RLIMIT_FSIZE: a file cannot pass the limit
    else:  # many files under the limit each: stopped by the runner's poll (known overshoot: one poll period)
        assert record.usage.wall_s < 2.0


def _free_mb(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


async def test_disk_reserve_stops_the_biggest_writer(base_dir, signing_key):
    """Many small files under every per-job limit: the free-disk reserve kept for the agent stops the job,
    deletes its partial output (so the reserve is whole again), and leaves a job that writes nothing."""
    reserve_mb = max(_free_mb(base_dir) - 40, 1)
    h, task = await start_harness(base_dir, signing_key, disk_reserve_mb=reserve_mb)
    try:
        quiet = h.submit(h.script_bundle("import time\nwhile True: time.sleep(0.1)", output_mb=4))
        await h.wait(quiet.id, until=lambda r: r.status == Status.RUNNING)
        filler = h.submit(h.script_bundle(
            "i = 0\nwhile i < 400:\n    open(f'f{i}', 'wb').write(b'x' * 500_000)\n    i += 1\n", output_mb=1024))
        if h.runner.disk_limits == "kernel":
            # its own filesystem would be a 1 GiB image, preallocated: it does not fit above the reserve, so
            # the job waits, having written nothing
            await h.wait(filler.id, until=lambda r: h.runner._held_for_fs == filler.id)
            assert h.runner.get(filler.id).status == Status.QUEUED
            assert not (h.runner.store.job_dir(filler.id) / "work.img").exists()
            assert h.runner.cancel(filler.id)
            after, _ = await h.run("print('{}')", output_mb=4)
            assert after.status == Status.SUCCEEDED and h.runner.get(quiet.id).status == Status.RUNNING
            assert h.runner.cancel(quiet.id)
            await h.wait(quiet.id)
            return
        record = await h.wait(filler.id, timeout=30)
        assert record.status == Status.KILLED_OUTPUT and record.reason == "disk_reserve", record
        assert record.usage.output_bytes < 200_000_000  # stopped well before its 400 files
        assert not h.runner.store.work_dir(filler.id).exists()
        await h.runner.deletions_done()  # deleted off the event loop
        assert h.runner.disk_free_bytes() >= reserve_mb << 20
        assert h.runner.get(quiet.id).status == Status.RUNNING
        after, _ = await h.run("print('{}')", output_mb=4)
        assert after.status == Status.SUCCEEDED
        assert h.runner.cancel(quiet.id)
        await h.wait(quiet.id)
    finally:
        await stop_harness(h, task)


async def test_no_job_starts_below_the_disk_reserve(base_dir, signing_key):
    h, task = await start_harness(base_dir, signing_key, disk_reserve_mb=_free_mb(base_dir) + 1024)
    try:
        held = h.submit(h.script_bundle("print('{}')"))
        await h.wait(held.id, until=lambda r: h.runner._held_for_disk)  # the runner looked and held it
        assert h.runner.get(held.id).status == Status.QUEUED and not h.runner.active
        assert h.runner.cancel(held.id)
    finally:
        await stop_harness(h, task)


async def test_sigterm_ignoring_job_killed_after_grace(harness):
    record = harness.submit(harness.script_bundle(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('{}', flush=True)\n"
        "while True:\n    time.sleep(0.1)\n", grace_s=1.0))
    # Ready once it has printed: SIGTERM is ignored from then on.
    await harness.wait(record.id, until=lambda r: r.status == Status.RUNNING and harness.stdout(record.id))
    t0 = time.monotonic()
    assert harness.runner.cancel(record.id)
    record = await harness.wait(record.id)
    elapsed = time.monotonic() - t0
    assert record.status == Status.CANCELLED and record.exit_code == -9
    assert 0.9 <= elapsed <= 2.0, elapsed


async def test_walltime_limit(harness):
    record, _ = await harness.run("import time\ntime.sleep(60)", walltime_s=0.5)
    assert record.status == Status.KILLED_WALLTIME
    assert record.usage.wall_s < 2.0
