"""The job ids and nonces this heater has accepted, remembered until their manifest expires (replay guard).

A signed bundle stays valid as long as its signature does; without this record, a bundle (or a
``submit_job`` command) replayed after its job's ``ack_job`` deleted the job's files would run again.
Keys are namespaced strings (``job:<id>``, ``bundle-nonce:<nonce>``, ``command-nonce:<nonce>``), each kept
until the expiry (unix time, s) of the manifest that named it. SQLite file ``<jobs_dir>/.seen-jobs.db``
(a leading dot: no job id can take the name), root 0600, written before the job is accepted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

SEEN_DB = ".seen-jobs.db"
MAX_LIFETIME_S = 30 * 86400.0
"""Longest a manifest may stay valid (expires_at - now): bounds how long the heater must remember it."""


class SeenJobs:
    """Persistent set of keys with expiries. Thread-safe; methods are short single transactions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # SQLite gives its -wal and -shm files the database file's mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)")

    def claim(self, keys: Iterable[str], expires_at: float, now: float) -> str | None:
        """Record every key until ``expires_at``, all or none: the first key already held (a replay) is
        returned and nothing is written; None when all were new. Expired keys are forgotten first.

        Raises sqlite3.Error (e.g. a full disk): the caller refuses the job then."""
        keys = list(keys)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM seen WHERE expires_at < ?", (now,))
                for key in keys:
                    if self._db.execute("SELECT 1 FROM seen WHERE key = ?", (key,)).fetchone():
                        self._db.execute("ROLLBACK")
                        return key
                self._db.executemany("INSERT INTO seen (key, expires_at) VALUES (?, ?)",
                                     [(k, expires_at) for k in keys])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return None

    def held(self, key: str, now: float) -> bool:
        """Whether ``key`` is remembered and not expired."""
        with self._lock:
            row = self._db.execute("SELECT expires_at FROM seen WHERE key = ?", (key,)).fetchone()
        return row is not None and row[0] >= now

    def close(self) -> None:
        with self._lock:
            self._db.close()
