"""Persisted state: a small JSON file written atomically (temp file, fsync, rename, fsync of the directory).

A power cut in the middle of a write leaves the previous file intact (rename(2) is atomic on POSIX file
systems). The file is mode 0600 (it holds the household's setpoints and schedule). A file that cannot be read
or parsed is reported and ignored: the agent then starts fresh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import structlog

from qrad_agent.files import open_private

log = structlog.get_logger(component="state")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON to ``path`` atomically. Raises OSError if the directory is not writable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_TRUNC), "w") as handle:  # 0600 whatever the umask
        json.dump(state, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(path: Path) -> dict[str, Any]:
    """The saved state, or {} when there is none or it is unreadable (logged with the reason)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("state file ignored", path=str(path), error=str(exc))
        return {}
    return data if isinstance(data, dict) else {}
