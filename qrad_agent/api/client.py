"""The local API client used by the CLI: blocking, one request, one response (the CLI is not the agent)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class AgentUnreachable(Exception):
    """No agent answers on the socket (not running, wrong path, or no permission)."""


class RequestFailed(Exception):
    """The agent answered with an error; ``usage`` when the request itself was wrong (CLI exit 2)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def call(path: Path, method: str, params: dict[str, Any] | None = None, timeout_s: float = 5.0) -> Any:
    """Send one request and return its result. Raises AgentUnreachable or RequestFailed."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(json.dumps({"method": method, "params": params or {}}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise AgentUnreachable(f"{path}: {exc.strerror or exc}") from exc
    try:
        response = json.loads(data)
    except ValueError as exc:
        raise AgentUnreachable(f"{path}: unreadable answer {data[:80]!r}") from exc
    if not response.get("ok"):
        raise RequestFailed(str(response.get("error", "unknown error")), bool(response.get("usage")))
    return response["result"]
