"""A log sink that fails never takes the heater down: the daemon with its standard error on a full disk
(/dev/full: ENOSPC) or on a pipe whose reader is gone (EPIPE) starts, heats, goes to minimum power when the
room sensor is lost, and stops cleanly on SIGTERM (the issue: exit 1 at start-up, or exit within 6 s with
the P-state caps left at 2.4 GHz)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from test_daemon import AGENT, _agent_toml, _int, _read, _wait_for, hwsim  # noqa: F401 (fixture)

HWSIM = str(Path(AGENT).with_name("qrad-hwsim"))

pytestmark = pytest.mark.slow


def _caps(root: Path) -> list[tuple[int, int]]:
    policies = sorted((root / "devices/system/cpu/cpufreq").glob("policy*"))
    return [(_int(p / "scaling_max_freq"), _int(p / "cpuinfo_min_freq")) for p in policies]


@pytest.mark.parametrize("sink", ["dev_full", "closed_pipe"])
def test_daemon_keeps_the_heater_safe_when_its_log_sink_fails(tmp_path: Path, hwsim, sink: str) -> None:
    root, _ = hwsim
    config = tmp_path / "agent.toml"
    config.write_text(_agent_toml(root, tmp_path / "state"))
    if sink == "dev_full":
        stderr = open("/dev/full", "w")  # noqa: SIM115 (closed below)
        read_end = None
    else:
        read_fd, write_fd = os.pipe()
        stderr, read_end = os.fdopen(write_fd, "w"), read_fd
    agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=stderr)
    stderr.close()
    try:
        _wait_for(lambda: any(cap > low for cap, low in _caps(root)), 20, "the agent to raise a P-state cap")
        if read_end is not None:
            os.close(read_end)  # the log reader is gone: every write now fails with EPIPE
        assert agent.poll() is None, "the daemon died when its log sink failed"
        fault = subprocess.run([HWSIM, "fault", "--root", str(root), "--sensor", "missing"],
                               capture_output=True, text=True, timeout=30)
        assert fault.returncode == 0, fault.stderr
        _wait_for(lambda: all(cap == low for cap, low in _caps(root)), 20,
                  "minimum power without a room sensor")
        assert agent.poll() is None, "the daemon died when its log sink failed"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert all(cap == low for cap, low in _caps(root))
    assert _read(root / "fs/cgroup/qrad-jobs/cpu.max").split()[0] == "1000"
