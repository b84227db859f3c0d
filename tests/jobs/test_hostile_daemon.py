"""Hostile jobs end to end through the deployed daemon (issue 13, "Must show"): `qrad-agent launcher` and
`qrad-agent run` as processes on hw-sim, syncing to a real mosquitto (mutual TLS, the platform's 256 KiB
limit); a technician submits 24 kinds of hostile job with `qrad-agent jobs submit`. The daemon keeps running
through all of them, every result reaches the platform bounded, a restart with the results on disk comes up,
and the next benign job succeeds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_helpers import numpy_runtime, remove_tree

from qrad_agent.jobs import jobfs
from qrad_agent.jobs.bundle import write_manifest
from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_agent.sync.contract import Kind, envelope_bytes
from qrad_agent.sync.devbroker import DevBroker, make_pki

pytestmark = pytest.mark.slow

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))
DEVICE = "heater-1"

# id -> (job.py, manifest limits, the platform's terminal status, result.reason when it is fixed)
HOSTILE: dict[str, tuple[str, dict, str, str | None]] = {
    "deep-tree": (("import os\nfd = os.open('.', os.O_RDONLY)\nfor i in range(1100):\n    os.mkdir('d', dir_fd=fd)\n"
                   "    n = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
                   "    with open(os.open('f', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=n), 'wb') as f:\n"
                   "        f.write(b'x' * 16000)\n    os.close(fd)\n    fd = n\n"), {"output_mb": 2}, "failed", None),
    "bad-name": ("open(b'bad\\xffname', 'wb').write(b'1')\nopen(b'esc\\x1b[2J', 'wb').write(b'2')\n", {},
                 "succeeded", None),
    "long-names": (("import os\nfor i in range(64):\n    d = '/'.join(f'{i:02d}' + 'd' * 240 for _ in range(12))\n"
                    "    os.makedirs(d)\n    open(os.path.join(d, 'f' * 200), 'w').write(str(i))\n"), {},
                   "succeeded", None),
    "fallocate": (("import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                   "fd = os.open('p', os.O_WRONLY | os.O_CREAT, 0o600)\n"
                   "libc.fallocate(fd, 1, ctypes.c_long(0), ctypes.c_long(8 << 20))\ntime.sleep(20)\n"),
                  {"output_mb": 2, "walltime_s": 15}, "failed", None),
    "one-byte-files": ("import time\nfor i in range(1500):\n    open(f'f{i}', 'wb').write(b'x')\ntime.sleep(20)\n",
                       {"output_mb": 2, "walltime_s": 15}, "failed", None),
    "empty-files": ("import time\nfor i in range(100000):\n    open(f'e{i}', 'w').close()\ntime.sleep(20)\n",
                    {"walltime_s": 15}, "failed", "output_inodes"),
    "fork-bomb": (("import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                   "        time.sleep(0.01)\n"), {"pids": 16, "walltime_s": 2}, "failed", "killed_walltime"),
    "memory-hog": ("chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))\n", {"memory_mb": 64},
                   "failed", "killed_memory"),
    "disk-filler": ("f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 65536)\n", {"output_mb": 2},
                    "failed", None),
    "stdout-flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", {"output_mb": 2},
                     "failed", None),
    "binary-stdout": ("import sys\nsys.stdout.buffer.write(bytes(range(256)) * 64)\n", {}, "succeeded", None),
    "egress": (("import socket\nfor a in [('127.0.0.1', 1883), ('1.1.1.1', 53)]:\n    try:\n"
                "        socket.create_connection(a, timeout=1)\n        raise SystemExit(f'reached {a}')\n"
                "    except OSError:\n        pass\n"), {}, "succeeded", None),
    "read-secrets": (("for p in ['/etc/shadow', '/var/lib/qrad-agent/state.json', '/root/.ssh/id_ed25519']:\n"
                      "    try:\n        open(p).read()\n        raise SystemExit(f'read {p}')\n"
                      "    except OSError:\n        pass\n"), {}, "succeeded", None),
    "write-outside": (("for p in ['/usr/evil', '/etc/evil', '/evil']:\n    try:\n        open(p, 'w')\n"
                       "        raise SystemExit(f'wrote {p}')\n    except OSError:\n        pass\n"), {},
                      "succeeded", None),
    "signal-others": (("import os, signal\nfor pid in range(1, 400):\n    if pid != os.getpid():\n        try:\n"
                       "            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n"), {},
                      "succeeded", None),
    "denied-syscalls": (("import ctypes, platform\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                         "nr = {'x86_64': (165, 101, 321), 'aarch64': (40, 117, 280)}[platform.machine()]\n"
                         "assert libc.syscall(nr[0], b'none', b'/tmp', b'tmpfs', 0, 0) < 0\n"
                         "assert libc.syscall(nr[1], 0, 0, 0, 0) < 0\nassert libc.syscall(nr[2], 0, 0, 0) < 0\n"),
                        {}, "succeeded", None),
    "ignore-sigterm": (("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n"
                        "    time.sleep(0.1)\n"), {"walltime_s": 2, "grace_s": 1}, "failed", "killed_walltime"),
    "cpu-spin": ("while True:\n    pass\n", {"walltime_s": 2}, "failed", "killed_walltime"),
    "symlinks": ("import os\nos.symlink('/etc/shadow', 'shadow')\nos.symlink('/', 'root')\nos.symlink('loop', 'loop')\n",
                 {}, "succeeded", None),
    "hard-links": ("import os\nos.link('job.py', 'again.py')\nfor i in range(50):\n    os.link('job.py', f'l{i}')\n",
                   {}, "succeeded", None),
    "special-files": ("import os, socket\nos.mkfifo('fifo')\ns = socket.socket(socket.AF_UNIX)\ns.bind('sock')\n",
                      {}, "succeeded", None),
    "locked-dirs": (("import os\nos.makedirs('a/b/c')\nopen('a/b/c/f', 'w').write('x')\nos.chmod('a/b/c/f', 0)\n"
                     "os.chmod('a/b/c', 0)\nos.chmod('a/b', 0)\nos.chmod('a', 0)\n"), {}, "succeeded", None),
    "self-segv": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", {}, "failed", "signal"),
    "exit-code": ("raise SystemExit(3)\n", {}, "failed", "exit_code"),
}


def _config(base: Path, root: Path, cgroup: Path, broker: DevBroker, pki) -> str:
    python, runtime, env = numpy_runtime()
    binds = ", ".join(f'{{ host = "{b.host}", sandbox = "{b.sandbox}" }}' for b in runtime)
    cert, key = pki.client(DEVICE)
    return f"""
device_id = "{DEVICE}"
state_dir = "{base}/state"
[api]
socket_path = "{base}/api.sock"
[jobs]
jobs_dir = "{base}/jobs"
cgroup = "{cgroup}"
launcher_socket = "{base}/launcher/launcher.sock"
allow_unsigned = true
python = "{python}"
runtime = [{binds}]
env = {{ PYTHONPATH = "{env['PYTHONPATH']}" }}
poll_s = 0.1
disk_reserve_mb = 16
max_output_inodes = 2000
[sync]
host = "127.0.0.1"
port = {broker.port}
ca_file = "{pki.ca}"
cert_file = "{cert}"
key_file = "{key}"
keepalive_s = 5
backoff_initial_s = 0.1
backoff_max_s = 1.0
outbox_path = "{base}/state/outbox.db"
outbox_durability = "normal"
state_period_s = 0.5
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
[thermostat]
mode = "comfort"
period_s = 1.0
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 1.0
"""


def _wait(predicate, timeout_s: float, what: str, *alive: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        for proc in alive:
            assert proc.poll() is None, f"{proc.args[:2]} exited {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.1)


def _bundle(base: Path, job_id: str, code: str, limits: dict) -> Path:
    bundle = base / "bundles" / job_id
    bundle.mkdir(parents=True)
    (bundle / "job.py").write_text(code)
    write_manifest(bundle, {"id": job_id, "command": ["python3", "job.py"], **limits})
    return bundle


def test_hostile_jobs_never_stop_the_daemon(base_dir: Path) -> None:
    from qrad_hwsim.platform import Platform

    root = base_dir / "sys"
    cgroup = Path(f"/sys/fs/cgroup/qrad-test-{base_dir.name[-8:]}")
    pki = make_pki(base_dir / "pki", ("platform", DEVICE))
    broker = DevBroker(base_dir / "broker", pki)
    broker.start()
    config = base_dir / "agent.toml"
    config.write_text(_config(base_dir, root, cgroup, broker, pki))
    procs: list[subprocess.Popen] = []

    def start_agent() -> subprocess.Popen:
        proc = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(base_dir / "agent.log").open("a"))
        procs.append(proc)
        return proc

    pcert, pkey = pki.client("platform")
    try:
        sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room",
                                "--initial-air-c", "19.5"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        launcher = subprocess.Popen([AGENT, "launcher", "--config", str(config)],
                                    stderr=(base_dir / "launcher.log").open("w"))
        procs.append(launcher)
        _wait((base_dir / "launcher" / "launcher.sock").exists, 20, "launcher socket", launcher)
        with Platform("127.0.0.1", broker.platform_port, pki.ca, pcert, pkey) as platform:
            agent = start_agent()
            _wait((base_dir / "jobs" / "spool").is_dir, 30, "jobs spool", agent)
            for job_id, (code, limits, _, _) in HOSTILE.items():
                done = subprocess.run([AGENT, "jobs", "--config", str(config), "submit",
                                       str(_bundle(base_dir, job_id, code, limits))],
                                      capture_output=True, text=True, timeout=30)
                assert done.returncode == 0, done.stderr

            def terminal(job_id: str) -> list[dict]:
                return [m for m in platform.job_statuses(DEVICE, job_id) if m["status"] in ("succeeded", "failed")]

            _wait(lambda: all(terminal(j) for j in HOSTILE), 240, "results of every hostile job", agent, launcher)
            logs = (base_dir / "agent.log").read_text()
            for job_id, (_, _, status, reason) in HOSTILE.items():
                body = terminal(job_id)[-1]
                assert body["status"] == status, (job_id, body["result"].get("reason"), body["result"].get("detail"))
                if reason is not None:
                    assert body["result"]["reason"] == reason, (job_id, body["result"])
                assert len(envelope_bytes(DEVICE, 1, 0.0, Kind.JOB, body)) < 17 * 1024, job_id
            results = {j: terminal(j)[-1]["result"] for j in HOSTILE}
            if jobfs.unavailable_reason(base_dir / "probe") is None:  # each job in its own filesystem
                assert all(r.get("disk_limits") == "kernel" for r in results.values()), results
                assert results["one-byte-files"]["reason"] == "output_full", results["one-byte-files"]
                assert "ENOSPC" in results["one-byte-files"]["detail"]
            assert results["bad-name"]["outputs"]["bad\\xffname"]["escaped"] is True
            assert results["long-names"]["outputs_omitted"] > 0
            assert "shadow" not in results["symlinks"]["outputs"]
            assert agent.poll() is None and launcher.poll() is None, logs
            assert "Traceback" not in logs, logs[-3000:]

            # a restart with every result on disk (unacknowledged) comes up, and runs the next job
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=30) == 0
            online = sum(1 for a in platform.devices[DEVICE].availability if a[1] == "online")
            agent = start_agent()
            _wait(lambda: sum(1 for a in platform.devices[DEVICE].availability if a[1] == "online") > online,
                  30, "the restarted agent online", agent)
            done = subprocess.run([AGENT, "jobs", "--config", str(config), "submit",
                                   str(_bundle(base_dir, "benign", "print('{\"ok\": 1}')", {})), "--wait", "60"],
                                  capture_output=True, text=True, timeout=90)
            assert done.returncode == 0, done.stdout + done.stderr
            _wait(lambda: terminal("benign"), 30, "the benign job's result", agent)
            assert terminal("benign")[-1]["status"] == "succeeded"
            for job_id in [*HOSTILE, "benign"]:
                answer = platform.response(platform.ack_job(DEVICE, job_id), 15)
                assert answer is not None and answer["ok"] is True, (job_id, answer)
            _wait(lambda: not any((base_dir / "jobs" / j).exists() for j in HOSTILE), 30, "deleted job files")
            assert agent.poll() is None
            for proc in (agent, launcher):
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        broker.stop()
        try:
            remove_tree(JobsCgroupTree(cgroup))
        except Exception:  # noqa: BLE001 - the tree may never have been made
            pass
