"""The local API server: one JSON request per line in, one JSON response per line out.

Request ``{"method": "sensors", "params": {...}}``; response ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "...", "usage": bool}`` (usage: the request itself was wrong). The socket is
created mode 0660 and, when configured, owned by the technicians' group, so only that group and root
reach it. Each request's peer credentials (SO_PEERCRED:
pid, uid, gid) are read from the kernel, for the audit log of changes.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from qrad_agent.errors import Refused

log = structlog.get_logger(component="api")

MAX_REQUEST_BYTES = 65536
SOCKET_MODE = 0o660


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of the socket, as the kernel says (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


Handler = Callable[[dict[str, Any], Peer], Any]


def peer_of(writer: asyncio.StreamWriter) -> Peer:
    """The peer credentials of a Unix-socket connection."""
    sock: socket.socket = writer.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", raw))


class ApiError(Refused):
    """A request the API refuses; the message goes back to the client (``usage``: see `Refused`)."""


class ApiServer:
    """Serves ``handlers`` (method name -> function(params, peer)) on ``path``."""

    def __init__(self, path: Path, handlers: dict[str, Handler], group: str | None = None) -> None:
        self.path = path
        self.handlers = handlers
        self.group = group

    async def run(self) -> None:
        """Listen until cancelled; the socket file is removed on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES)
        try:
            os.chmod(self.path, SOCKET_MODE)
            if self.group:  # under systemd the unit's Group= already gave it (no CAP_CHOWN there)
                gid = grp.getgrnam(self.group).gr_gid
                if os.stat(self.path).st_gid != gid:
                    os.chown(self.path, -1, gid)
            log.info("local API listening", path=str(self.path), group=self.group)
            async with server:
                await server.serve_forever()
        finally:
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        answered = 0
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self.dispatch(line, peer), default=str).encode() + b"\n")
                await writer.drain()
                answered += 1
        except ConnectionError as exc:  # after an answer: the client read it and left (every CLI call)
            (log.debug if answered else log.warning)("API connection dropped", error=str(exc), uid=peer.uid,
                                                     answered=answered)
        except (asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("API connection dropped", error=str(exc), uid=peer.uid)
        finally:
            writer.close()

    def dispatch(self, line: bytes, peer: Peer) -> dict[str, Any]:
        """Decode one request line and run its handler; never raises."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise ApiError('request must be {"method": "...", "params": {...}}')
            handler = self.handlers.get(request["method"])
            if handler is None:
                raise ApiError(f"unknown method {request['method']!r}; known: {', '.join(sorted(self.handlers))}",
                               usage=True)
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise ApiError("params must be an object")
            return {"ok": True, "result": handler(params, peer)}
        except Refused as exc:  # ApiError, or a refusal from the commands surface
            return {"ok": False, "error": str(exc), "usage": exc.usage}
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"malformed JSON: {exc}"}
        except Exception as exc:  # a handler bug answers the client instead of killing the agent
            log.exception("API handler failed", method=line[:80].decode(errors="replace"))
            return {"ok": False, "error": f"internal error: {exc!r}"}
