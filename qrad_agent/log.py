"""Structured logging with structlog: JSON lines for journald, readable lines on a terminal.

Every line carries ``device_id`` (bound once at start) and ``component`` (bound by each module's logger).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
RECENT_EVENTS = 2000
"""How many recent log events the agent keeps in memory for `qrad-agent logs`."""


class RecentEvents:
    """A structlog processor keeping the last events (plain dicts) in a bounded ring; drops the oldest."""

    def __init__(self, maxlen: int = RECENT_EVENTS) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append({k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
                            for k, v in event.items()})
        return event

    def query(self, component: str | None = None, level: str | None = None, limit: int = 200) -> list[dict]:
        """The newest ``limit`` events of ``component`` at ``level`` or above, oldest first."""
        floor = LEVELS.get(level or "debug", logging.DEBUG)
        picked = [e for e in self.events if (component is None or e.get("component") == component)
                  and LEVELS.get(str(e.get("level")), logging.INFO) >= floor]
        return picked[-limit:]


recent = RecentEvents()
"""The process's ring of recent events (the one piece of module state: it mirrors the log stream)."""


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (it may be replaced after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup_logging(device_id: str, level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the process. ``fmt``: "json", "console" or "auto" (console on a TTY).

    Without ``stream`` the log goes to the process's standard error as it is at each write.
    """
    stream = stream or _CurrentStderr()  # type: ignore[assignment]
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
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
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(device_id=device_id)
