"""Structured logging with structlog: JSON lines for journald, readable lines on a terminal.

Every line carries ``device_id`` (bound once at start) and ``component`` (bound by each module's logger).

Logging can never raise into control or safety, nor block them: the sink (`SafeSink`) writes each line
with one ``write(2)`` on the standard error descriptor; a write that fails (EPIPE: the reader is gone,
ENOSPC: a full disk, EAGAIN: a full pipe on a non-blocking descriptor) drops the line and counts it
(`dropped`, shown in the agent's status). The recent-events ring keeps every event either way.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys
from collections import deque
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
RECENT_EVENTS = 2000
"""How many recent log events the agent keeps in memory for `qrad-agent logs`."""
COMPONENTS = ("api", "autotune", "commands", "deadman", "field", "fire", "jobs", "launcher", "loopwatch", "main",
              "operations", "platform", "power", "safety", "selftest", "sensors", "state", "supervisor", "sync",
              "thermostat")
"""Every ``component`` the agent's loggers bind (tests/ops/test_views.py checks it against the sources)."""


class RecentEvents:
    """A structlog processor keeping the last events (plain dicts) in a bounded ring; drops the oldest."""

    def __init__(self, maxlen: int = RECENT_EVENTS) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.seq = 0

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.seq += 1
        kept = {k: _plain_json(v) for k, v in event.items()}
        kept["seq"] = self.seq  # only in the ring (for `logs --follow`), not in the log stream
        self.events.append(kept)
        return event

    def components(self) -> list[str]:
        """Every known component: the loggers' own and any other seen in the ring."""
        return sorted(set(COMPONENTS) | {str(e["component"]) for e in self.events if "component" in e})

    def query(self, component: str | None = None, level: str | None = None, limit: int = 200,
              after_seq: int = 0, since: datetime | None = None) -> list[dict]:
        """The newest ``limit`` events of ``component`` at ``level`` or above, oldest first; only those after
        sequence number ``after_seq`` and stamped at or after ``since`` (UTC)."""
        floor = LEVELS.get(level or "debug", logging.DEBUG)
        picked = [e for e in self.events if (component is None or e.get("component") == component)
                  and LEVELS.get(str(e.get("level")), logging.INFO) >= floor and e["seq"] > after_seq
                  and (since is None or _stamp(e) >= since)]
        return picked[-limit:] if limit > 0 else []


def _plain_json(value: Any) -> Any:
    """``value`` as plain JSON data (dicts and lists kept as such, anything else as its str)."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain_json(v) for v in value]
    return str(value)


def _stamp(event: dict[str, Any]) -> datetime:
    """The event's UTC timestamp (TimeStamper iso), the epoch when missing or unreadable."""
    try:
        stamp = datetime.fromisoformat(str(event.get("timestamp", "")))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


recent = RecentEvents()
"""The process's ring of recent events (the one piece of module state: it mirrors the log stream)."""


class SafeSink:
    """A text sink that never raises and never blocks the daemon: one ``os.write`` per line to ``fd``.

    ``dropped`` counts the lines that could not be written; ``last_error`` names the last errno.
    """

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self.dropped = 0
        self.last_error: str | None = None

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        try:
            written = os.write(self.fd, data)
        except OSError as exc:  # EPIPE, ENOSPC, EAGAIN, EBADF: drop the line, count it
            self.dropped += 1
            self.last_error = errno.errorcode.get(exc.errno or 0, str(exc))
            return 0
        if written < len(data):  # a partial write on a full pipe: the rest of the line is dropped
            self.dropped += 1
            self.last_error = "partial write"
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def isatty(self) -> bool:
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        """Plain JSON: lines dropped and the last error."""
        return {"dropped": self.dropped, "last_error": self.last_error}


sink = SafeSink()
"""The process's log sink (module state, like `recent`: it is the process's standard error)."""


def make_stderr_nonblocking() -> bool:
    """Put the standard error descriptor in non-blocking mode when it is not a terminal (a pipe or journald's
    socket belongs to this process alone), so a stalled log reader drops lines instead of blocking the loop.
    Returns whether it did."""
    try:
        if os.isatty(2):
            return False
        flags = fcntl.fcntl(2, fcntl.F_GETFL)
        fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        return True
    except OSError:
        return False


class _Quiet:
    """``sys.stderr`` for the daemon: stray writes (a library's warning, a traceback) go through the sink."""

    def __init__(self, target: SafeSink) -> None:
        self._sink = target

    def write(self, text: str) -> int:
        return self._sink.write(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self._sink.isatty()

    def fileno(self) -> int:
        return self._sink.fd


def protect_stderr() -> None:
    """Route ``sys.stderr`` through the sink: nothing the process prints there can raise or block."""
    sys.stderr = _Quiet(sink)


def setup_logging(device_id: str, level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the process. ``fmt``: "json", "console" or "auto" (console on a TTY).

    Without ``stream`` the log goes to the process's standard error through `sink`, which never raises.
    """
    out: Any = stream or sink
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            recent,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(device_id=device_id)
