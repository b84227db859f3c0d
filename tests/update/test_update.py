"""Signed updates end to end: a real heater agent (this checkout, as wheels of several versions) run by the
supervisor stand-in on hw-sim; updates that pass, fail their health check, crash-loop, are refused, or are
killed at every step.

The tests of this module share one heater and run in order (each leaves it on a known version).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_helpers import build_agent_wheel

from qrad_agent.api.client import AgentUnreachable, RequestFailed, call
from qrad_agent.config import load_config
from qrad_agent.update.bundle import build_bundle
from qrad_agent.update.install import this_python
from qrad_agent.update.layout import Layout
from qrad_agent.update.updater import FAULT_ENV, Updater

pytestmark = pytest.mark.slow
AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))


def _config(run: Path, root: Path, key: Path, jobs_key: Path) -> str:
    return f"""
device_id = "upd-0001"
state_dir = "{run}/state"
[api]
socket_path = "{run}/api.sock"
privileged_group = "root"
[jobs]
enabled = false
public_key = "{jobs_key}"
[safety]
alarm_gpio_line = 23
identify_gpio_line = 24
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
platform_overhead_w = 30.0
[thermostat]
mode = "comfort"
period_s = 1.0
[update]
root = "{run}/opt"
release_public_key = "{key}"
python = "{this_python()}"
base_site_packages = "{sysconfig.get_paths()['purelib']}"
restart = "supervisor"
health_timeout_s = 20
safety_wait_s = 0
drain_timeout_s = 5
min_free_mb = 1
poll_s = 0.3
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 1.0
"""


def _write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


class Heater:
    def __init__(self, run: Path) -> None:
        self.run = run
        self.release_key = Ed25519PrivateKey.generate()
        self.jobs_key = Ed25519PrivateKey.generate()
        self.config = run / "agent.toml"
        self.config.write_text(_config(run, run / "sys", _write_key(run / "release.pem", self.release_key),
                                       _write_key(run / "jobs.pem", self.jobs_key)))
        self.cfg = load_config(self.config)
        self.layout = Layout(run / "opt")
        self.wheels = run / "wheels"
        self.procs: list[subprocess.Popen] = []

    def bundle(self, version: str, breaks: str | None = None, key: Ed25519PrivateKey | None = None,
               allow_downgrade: bool = False, tar: bool = False) -> Path:
        wheel = build_agent_wheel(self.wheels / f"{version}-{breaks}", version, breaks)
        directory = build_bundle(self.run / "bundles" / f"{version}-{breaks}-{os.urandom(3).hex()}", [wheel],
                                 version, wheel.name, key or self.release_key, allow_downgrade)
        if not tar:
            return directory
        archive = directory.with_suffix(".tar.gz")
        with tarfile.open(archive, "w:gz") as out:
            for path in sorted(directory.iterdir()):
                out.add(path, arcname=path.name)
        return archive

    def cli(self, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([self.layout.agent_exe() if args[0] == "--installed" else AGENT,
                               *[a for a in args if a != "--installed"]], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})}, check=False)

    def update(self, source: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.cli("update", "--config", str(self.config), "--file", str(source), "--json", env=env)

    def status(self) -> dict | None:
        try:
            return call(self.cfg.api.socket_path, "status", timeout_s=3)
        except (AgentUnreachable, RequestFailed):
            return None

    def wait_healthy(self, version: str) -> None:
        updater = Updater(self.cfg)
        deadline = time.monotonic() + 60
        reason = None
        while time.monotonic() < deadline:
            reason = updater.health(version)
            if reason is None:
                return
            time.sleep(0.3)
        raise AssertionError(f"not healthy on {version}: {reason}\n{self.log()}")

    def log(self) -> str:
        return (self.run / "supervisor.log").read_text()[-3000:]

    def snapshot(self) -> tuple:
        """What an update may change: the links, the releases, the history length."""
        return (self.layout.current_version(), self.layout.previous_version(),
                sorted(p.name for p in self.layout.releases.iterdir()), len(self.layout.history()))


@pytest.fixture(scope="module")
def heater():
    run = Path(tempfile.mkdtemp(prefix="qrad-upd-"))
    h = Heater(run)
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(run / "sys"), "--speed", "1", "--devices", "room",
                            "--initial-air-c", "19.5"], stdout=subprocess.PIPE, text=True)
    h.procs.append(sim)
    try:
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        for line in (23, 24):
            gpio = run / "sys" / "class" / "gpio" / f"gpio{line}"
            gpio.mkdir(parents=True)
            (gpio / "direction").write_text("out\n")
            (gpio / "value").write_text("0\n")
        first = h.update(h.bundle("0.1.0"))  # the first installation: installed, not started
        assert first.returncode == 0 and json.loads(first.stdout)["outcome"] == "installed", first.stderr
        sup = subprocess.Popen([AGENT, "supervise", "--config", str(h.config), "--restart-s", "0.2", "--burst", "3"],
                               stderr=(run / "supervisor.log").open("w"))
        h.procs.append(sup)
        h.wait_healthy("0.1.0")
        yield h
    finally:
        for proc in reversed(h.procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(run, ignore_errors=True)


def test_version_flag(heater: Heater) -> None:
    done = heater.cli("--installed", "--version")
    assert done.returncode == 0 and "qrad-agent 0.1.0" in done.stdout and "releases/0.1.0" in done.stdout


def test_refused_bundles_change_nothing(heater: Heater) -> None:
    before, pid_status = heater.snapshot(), heater.status()
    good = heater.bundle("0.2.0")
    unsigned = heater.bundle("0.2.0")
    (unsigned / "manifest.sig").unlink()
    corrupted = heater.bundle("0.2.0")
    wheel = next(corrupted.glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:-10] + b"0123456789")
    wrong_key = heater.bundle("0.2.0", key=heater.jobs_key)  # signed by the jobs key: not a release key
    extra = heater.bundle("0.2.0")
    shutil.copy(wheel, extra / "extra-0.1-py3-none-any.whl")
    downgrade = heater.bundle("0.0.9")
    cases = {"unsigned": unsigned, "file_mismatch": corrupted, "bad_signature": wrong_key,
             "unlisted_file": extra, "downgrade": downgrade, "bad_bundle": heater.run / "agent.toml"}
    for code, source in cases.items():
        done = heater.update(source)
        assert done.returncode == 1 and f"refused: {code}" in done.stderr, (code, done.stderr)
        snap = heater.snapshot()
        assert snap[:3] == before[:3], (code, snap)
    assert heater.status() is not None and heater.status()["version"] == pid_status["version"] == "0.1.0"
    assert [e["code"] for e in heater.layout.history()[-len(cases):]] == list(cases)
    assert good.is_dir()  # the same bundle, unharmed, still installs (next test)


def test_update_that_passes_its_health_check(heater: Heater) -> None:
    done = heater.update(heater.bundle("0.2.0", tar=True))
    outcome = json.loads(done.stdout)
    assert done.returncode == 0 and outcome["outcome"] == "succeeded", (done.stderr, heater.log())
    assert (outcome["from"], outcome["to"]) == ("0.1.0", "0.2.0")
    assert heater.layout.current_version() == "0.2.0" and heater.layout.previous_version() == "0.1.0"
    assert heater.status()["version"] == "0.2.0"
    assert "releases/0.2.0" in heater.cli("--installed", "--version").stdout


def test_update_failing_its_health_check_rolls_back(heater: Heater) -> None:
    done = heater.update(heater.bundle("0.3.0", breaks="selftest"))
    outcome = json.loads(done.stdout)
    assert done.returncode == 1 and outcome["outcome"] == "rolled_back", done.stderr
    assert "self-test failing: test release" in outcome["reason"]
    assert outcome["previous_healthy"] is True, outcome
    assert heater.layout.current_version() == "0.2.0" and not heater.layout.release_dir("0.3.0").exists()
    heater.wait_healthy("0.2.0")


def test_update_that_crash_loops_rolls_back(heater: Heater) -> None:
    done = heater.update(heater.bundle("0.4.0", breaks="crash"))
    outcome = json.loads(done.stdout)
    assert done.returncode == 1 and outcome["outcome"] == "rolled_back", done.stderr
    assert outcome["reason"] == "crash loop", outcome
    assert "start limit hit" in heater.log()
    assert heater.layout.current_version() == "0.2.0"
    heater.wait_healthy("0.2.0")


@pytest.mark.parametrize("phase", ["verify", "safety", "drain", "install", "switch", "restart", "check",
                                   "rollback"])
def test_kill_at_each_step_leaves_a_working_version(heater: Heater, phase: str) -> None:
    bundle = heater.bundle("0.5.0", breaks="crash" if phase == "rollback" else None)
    done = heater.update(bundle, env={FAULT_ENV: phase})
    assert done.returncode == -signal.SIGKILL, (phase, done.returncode, done.stderr)
    assert heater.layout.journal()["phase"] == phase
    # the next start of the agent runs the recovery first (the supervisor, or the unit's ExecStartPre)
    os.kill(int((heater.layout.root / "supervisor.pid").read_text()), signal.SIGHUP)
    deadline = time.monotonic() + 90  # a crash-looping 0.5.0 ("rollback") takes a start limit's worth
    while heater.layout.journal() and time.monotonic() < deadline:
        time.sleep(0.2)
    heater.wait_healthy("0.2.0")
    assert heater.layout.current_version() == "0.2.0" and not heater.layout.journal()
    assert not heater.layout.release_dir("0.5.0").exists() or phase == "verify"
    assert not list(heater.layout.releases.glob(".staging-*"))
    assert heater.layout.history()[-1]["outcome"] in ("interrupted", "rolled_back")
