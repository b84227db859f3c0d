"""The agent's side of the launcher's dead-man: beats from the event loop.

The launcher service (a separate process, `qrad_agent.jobs.launcher`) puts every job at the power floor
(frozen, minimum CPU quota) when the beats stop for ``jobs.deadman_timeout_s``: the agent was killed
(SIGKILL: the connection closes at once), is stopped (SIGSTOP), or its event loop is blocked or hung. The
beats are sent by a task on the agent's event loop, so a loop that does not run does not beat: the check
that catches a stuck loop does not itself run on that loop.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

import structlog

from qrad_agent.jobs.launcher import LauncherError

log = structlog.get_logger(component="deadman")

BEATS_PER_TIMEOUT = 5
"""Beats sent per timeout: four may be lost or late before the launcher acts."""


class Watchable(Protocol):
    """What the dead-man needs of the launcher client: arm a watch, get the connection to beat on."""

    def watch(self, timeout_s: float) -> socket.socket: ...


class DeadmanBeat:
    """Keeps the launcher's dead-man armed while the agent's loop runs. ``run`` until cancelled."""

    def __init__(self, launcher: Watchable, timeout_s: float) -> None:
        self.launcher = launcher
        self.timeout_s = timeout_s
        self.beats = 0
        self.armed = False
        self.last_error: str | None = None
        self._sock: socket.socket | None = None

    async def run(self) -> None:
        """Arm, then beat every timeout/5 s on the loop clock; re-arm after a lost connection."""
        period_s = self.timeout_s / BEATS_PER_TIMEOUT
        try:
            while True:
                if self._sock is None:
                    await self._arm()
                if self._sock is not None:
                    self._beat()
                await asyncio.sleep(period_s)
        finally:
            self._close()  # on stop the launcher floors the jobs: the agent has put them there already

    async def _arm(self) -> None:
        try:
            self._sock = await asyncio.to_thread(self.launcher.watch, self.timeout_s)
        except LauncherError as exc:
            if self.last_error != str(exc):
                log.error("dead-man not armed; retrying", error=str(exc))
            self.last_error, self.armed = str(exc), False
            return
        self.armed, self.last_error = True, None
        log.info("dead-man armed", timeout_s=self.timeout_s)

    def _beat(self) -> None:
        assert self._sock is not None
        try:
            self._sock.send(b"beat")
            self.beats += 1
        except BlockingIOError:
            pass  # the launcher is slow to read: the queued beats prove the loop ran
        except OSError as exc:
            log.error("dead-man connection lost; re-arming", error=str(exc))
            self.last_error = str(exc)
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.armed = False

    def status(self) -> dict[str, object]:
        """Plain JSON: armed, beats sent, timeout (s), last error."""
        return {"armed": self.armed, "beats": self.beats, "timeout_s": self.timeout_s,
                "last_error": self.last_error}
