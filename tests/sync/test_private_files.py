"""The agent's own files are 0600 however it is started: the real daemon, run by hand with umask 022."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from qrad_agent.files import private_sqlite
from qrad_agent.state import save_state
from qrad_agent.sync.commands import ReplayWindow
from qrad_agent.sync.outbox import Outbox

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def dump_toml(data: dict, prefix: str = "") -> str:
    """Enough TOML for the agent's config data: scalars and lists of scalars (JSON literals are TOML
    literals here), inline tables inside arrays of tables, tables, arrays of tables."""
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    text = (f"[{prefix[:-1]}]\n" if prefix else "") + "\n".join(lines) + "\n"
    for k, v in data.items():
        if isinstance(v, dict):
            text += dump_toml(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                text += f"[[{prefix}{k}]]\n" + "".join(f"{a} = {value(b)}\n" for a, b in item.items())
    return text


def test_in_process_files_are_0600_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_state(tmp_path / "state.json", {"mode": "comfort"})
        box = Outbox(tmp_path / "outbox.db", durability="normal")
        replay = ReplayWindow(tmp_path / "sync-commands.db", 60)
        assert replay.claim("c1", time.time(), time.time())
        legacy = tmp_path / "old.db"  # left 0644 by an older version, with its WAL
        legacy.touch(0o644)
        (tmp_path / "old.db-wal").touch(0o644)
        private_sqlite(legacy).close()
    finally:
        os.umask(old)
    for name in ("state.json", "outbox.db", "outbox.db-wal", "outbox.db-shm", "sync-commands.db",
                 "sync-commands.db-wal", "sync-commands.db-shm", "old.db", "old.db-wal"):
        assert mode(tmp_path / name) == 0o600, name
    box.close()
    replay.close()


def test_a_symlink_in_place_of_the_state_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / ".state.json.tmp").symlink_to(target)
    with pytest.raises(OSError):
        save_state(tmp_path / "state.json", {"mode": "comfort"})
    assert target.read_text() == "keep"


@pytest.mark.slow
def test_daemon_started_by_hand_with_umask_022_keeps_its_files_private(tmp_path: Path, heater_agent_data,
                                                                       platform) -> None:
    root = tmp_path / "sys"
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room"],
                           stdout=subprocess.PIPE, text=True)
    agent = None
    try:
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        data = heater_agent_data(state_period_s=0.5, telemetry_period_s=0.5)
        data["jobs"] = {"enabled": False}
        config = tmp_path / "agent.toml"
        config.write_text(dump_toml(data))
        assert tomllib.loads(config.read_text())["device_id"] == "heater-1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QRAD_")}
        agent = subprocess.Popen([AGENT, "run", "--config", str(config)], env=env,
                                 stderr=(tmp_path / "agent.log").open("w"), preexec_fn=lambda: os.umask(0o022))  # noqa: PLW1509 - no threads started yet
        assert platform.wait_for(lambda p: p.devices["heater-1"].state is not None, 30), \
            (tmp_path / "agent.log").read_text()[-3000:]
        response = platform.response(platform.set_setpoint("heater-1", "comfort", 21.0), 15)
        assert response is not None and response["ok"], response
        outbox = Path(data["sync"]["outbox_path"])
        private = [outbox, outbox.with_name("sync-commands.db")]
        private += [p.with_name(p.name + s) for p in private for s in ("-wal", "-shm")]
        for path in private:  # while the daemon runs: the WAL companions exist now
            assert path.exists() and mode(path) == 0o600, (path, oct(mode(path)) if path.exists() else None)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
        assert mode(Path(data["state_dir"]) / "state.json") == 0o600
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
