"""Private files: the agent's state, outbox and replay databases are readable by their owner only (0600).

However the agent is started (by hand with umask 022, from a shell script, under systemd's ``UMask=0077``),
`set_agent_umask` sets the process umask to 0077 at start, and each private file is also opened with an
explicit mode 0600 and ``fchmod``-ed to it, so a file left 0644 by an older version is corrected on open.
SQLite creates a database's ``-wal`` and ``-shm`` files with the mode of the database file itself, so a
0600 database gets 0600 companions; companions left by an older version are corrected too.
Files that others must read (the API socket, the jobs' directories) set their own modes where they are made.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

AGENT_UMASK = 0o077
"""The agent's umask: what it creates without an explicit mode is its own (as systemd's UMask=0077)."""
PRIVATE_MODE = 0o600
"""Mode of the agent's private files: owner read/write."""
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def set_agent_umask() -> int:
    """Set the process umask to `AGENT_UMASK`; returns the previous one."""
    return os.umask(AGENT_UMASK)


def open_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)`` and ``fchmod`` 0600: a file
    descriptor the caller closes. A symlink at ``path`` is refused (OSError ELOOP), so a local user cannot
    redirect the write. Raises OSError."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_private(path: Path) -> None:
    """Create ``path`` empty if missing, and make it (and existing SQLite companions) mode 0600."""
    os.close(open_private(path, os.O_RDWR))
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            os.chmod(companion, PRIVATE_MODE, follow_symlinks=False)
        except FileNotFoundError:  # none (yet): SQLite creates it with the database's mode
            pass


def private_sqlite(path: Path) -> sqlite3.Connection:
    """A connection (autocommit, usable from any thread) to the SQLite database at ``path``, parents
    created, the file and its -wal/-shm 0600. Raises OSError, sqlite3.Error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    make_private(path)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)
