"""A stand-in for the systemd unit where there is no systemd (tests, labs): `qrad-agent supervise`.

It does what qrad-agent.service does for the agent: before each start, the update recovery (the unit's
``ExecStartPre=qrad-agent update --recover``); start ``<root>/current/venv/bin/qrad-agent run --config``,
the symlink resolved again at every start; restart it ``restart_s`` after it exits, whatever the exit code
but 78 (EX_CONFIG, the unit's RestartPreventExitStatus); and a start limit (``burst`` starts within
``interval_s``, the unit's StartLimitBurst / StartLimitIntervalSec) which, when hit, is a crash loop: the
recovery rolls back a recent update (the unit's ``OnFailure=``), the count starts again. SIGHUP restarts the
agent (``systemctl restart``), SIGTERM/SIGINT stop it and the supervisor. Its pid is in
``<root>/supervisor.pid`` for the updater.

It is a plain blocking process (it is not the agent): it waits on the child with a short poll.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType

from qrad_agent.config import AgentConfig
from qrad_agent.errors import EX_CONFIG
from qrad_agent.update.updater import Updater

STOP_TIMEOUT_S = 45.0  # the unit's TimeoutStopSec


class Supervisor:
    """Runs and restarts the agent of ``config_path`` (module docstring)."""

    def __init__(self, cfg: AgentConfig, config_path: Path, restart_s: float = 1.0, burst: int = 5,
                 interval_s: float = 60.0) -> None:
        self.cfg, self.config_path = cfg, config_path
        self.updater = Updater(cfg, lambda line: print(line, file=sys.stderr, flush=True))
        self.layout = self.updater.layout
        self.restart_s, self.burst, self.interval_s = restart_s, burst, interval_s
        self.starts: deque[float] = deque()
        self._signal: int | None = None
        self.child: subprocess.Popen | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum

    def _start(self) -> subprocess.Popen:
        self.updater.recover()
        exe = self.layout.agent_exe()
        print(f"supervisor: starting {exe.resolve()}", file=sys.stderr, flush=True)
        return subprocess.Popen([str(exe), "run", "--config", str(self.config_path)])

    def _stop_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        self.child.send_signal(signal.SIGTERM)
        try:
            self.child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def _crash_loop(self) -> None:
        now = time.monotonic()
        self.starts.append(now)
        while self.starts and now - self.starts[0] > self.interval_s:
            self.starts.popleft()
        if len(self.starts) >= self.burst:
            print("supervisor: start limit hit (crash loop)", file=sys.stderr, flush=True)
            self.layout.crash_flag.write_text(f"{time.time()}\n")
            self.updater.recover(crash_loop=True)
            self.starts.clear()

    def run(self) -> int:
        """Until SIGTERM/SIGINT, or an EX_CONFIG exit; returns the exit status."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.layout.setup()
        pid_file = self.layout.root / "supervisor.pid"
        pid_file.write_text(f"{__import__('os').getpid()}\n")
        try:
            while True:
                self.child = self._start()
                while self.child.poll() is None and self._signal is None:
                    time.sleep(0.1)
                if self._signal in (signal.SIGTERM, signal.SIGINT):
                    self._stop_child()
                    return 0
                if self._signal == signal.SIGHUP:
                    self._signal = None
                    self._stop_child()
                    continue
                code = self.child.returncode
                print(f"supervisor: agent exited {code}", file=sys.stderr, flush=True)
                if code == EX_CONFIG:
                    return code
                self._crash_loop()
                deadline = time.monotonic() + self.restart_s
                while time.monotonic() < deadline and self._signal is None:
                    time.sleep(0.05)
                if self._signal in (signal.SIGTERM, signal.SIGINT):
                    return 0
                self._signal = None
        finally:
            self._stop_child()
            pid_file.unlink(missing_ok=True)
