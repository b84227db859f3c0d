"""factory-reset on a heater that has run: the real agent on hw-sim fills its state, outbox and replay window;
the reset leaves no file of the previous owner, and the test lists what remains."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="factory-reset needs root")]
AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))


def _config(run: Path) -> str:
    return f"""
device_id = "reset-0001"
state_dir = "{run}/var"
[api]
socket_path = "{run}/api.sock"
[jobs]
jobs_dir = "{run}/var/jobs"
public_key = "{run}/etc/jobs.pem"
[power]
sysfs_root = "{run}/sys"
jobs_cgroup = "{run}/sys/fs/cgroup/qrad-jobs"
[thermostat]
mode = "comfort"
period_s = 1.0
[sync]
host = "127.0.0.1"
port = 1
tls = false
ca_file = "{run}/etc/ca.pem"
cert_file = "{run}/var/identity/cert.pem"
key_file = "{run}/var/identity/key.pem"
outbox_path = "{run}/var/sync-outbox.db"
[update]
root = "{run}/opt"
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 1.0
"""


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def used_heater():
    run = Path(tempfile.mkdtemp(prefix="qrad-reset-"))
    for rel in ("etc/ca.pem", "etc/jobs.pem", "var/identity/cert.pem", "var/identity/key.pem"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(f"{rel}\n")
    (run / "etc/jobs.pem").write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    config = run / "agent.toml"
    config.write_text(_config(run))
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(run / "sys"), "--speed", "1", "--devices", "room"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(run / "agent.log").open("w"))
        deadline = time.monotonic() + 30
        while not (run / "var" / "sync-outbox.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    shutil.rmtree(run / "sys")
    print((run / "agent.log").read_text()[-2000:])
    (run / "agent.log").unlink()
    job = run / "var" / "jobs" / "job-1"  # a finished job's files (jobs need a sandbox: written as the runner does)
    (job / "work").mkdir(parents=True)
    (job / "work" / "result.json").write_text('{"answer": 42}')
    (job / "status.json").write_text('{"id": "job-1", "status": "succeeded"}')
    (run / "opt" / "incoming").mkdir(parents=True)
    (run / "opt" / "incoming" / ("a" * 64)).write_bytes(b"bundle")
    yield run, config
    shutil.rmtree(run, ignore_errors=True)


def _reset(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, "factory-reset", "--config", str(config), *args], capture_output=True, text=True,
                          check=False,
                          input=stdin, timeout=60)


def test_reset_leaves_no_file_of_the_previous_owner(used_heater) -> None:
    run, config = used_heater
    before = _files(run)
    assert {"var/state.json", "var/sync-outbox.db", "var/sync-commands.db"} <= before, before

    refused = _reset(config, stdin="wrong\n")  # asks for the device id; a wrong answer erases nothing
    assert refused.returncode == 1 and "nothing erased" in refused.stderr
    assert _files(run) == before

    done = _reset(config, stdin="reset-0001\n")
    assert done.returncode == 0, done.stderr
    assert "keeps:" in done.stderr and "device identity" in done.stderr
    remaining = _files(run)
    print("remaining after factory-reset:", sorted(remaining))
    assert remaining == {"agent.toml", "etc/ca.pem", "etc/jobs.pem", "var/identity/cert.pem",
                         "var/identity/key.pem"}

    again = _reset(config, "--yes", "--identity")
    assert again.returncode == 0, again.stderr
    remaining = _files(run)
    print("remaining after factory-reset --identity:", sorted(remaining))
    assert remaining == {"agent.toml", "etc/ca.pem", "etc/jobs.pem", "var/UNPROVISIONED"}


def test_reset_refused_while_the_agent_runs(used_heater) -> None:
    run, config = used_heater
    before = _files(run)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(run / "api.sock"))
        server.listen()
        done = _reset(config, "--yes")
    assert done.returncode == 75 and "stop it first" in done.stderr
    assert _files(run) - {"api.sock"} == before
