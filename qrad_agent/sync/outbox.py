"""The outbox: every message is written to SQLite (WAL) before it is published and deleted on its PUBACK.

Rows are replayed in insertion order after a reconnect or a restart. The sequence number of the next
message is kept in the same database, so it survives a restart even when the outbox is empty.

Drop policy when ``max_messages`` rows are stored (documented in docs/sync.md):

- the victim is the oldest row of the lowest drop class present that is not above the new message's class:
  telemetry (class 0) first, then events and command responses (class 1);
- a new telemetry batch with no telemetry left to evict is itself dropped; likewise a new event;
- alarms and job results (class 2) are never dropped: with nothing droppable left they are stored above the
  bound (they are rare, and losing one is worse than a larger file).

Dead letters: a row the broker cannot take (larger than its packet limit, refused in its PUBACK, or the
link lost `MAX_LINK_LOSSES` times in a row with it the oldest in flight) would block every row behind it
if it were resent forever. `dead_letter` moves it, with the reason, to the ``dead_letter`` table of the
same file: it stays on disk for a technician (``qrad-agent`` status shows the count), the client sends an
``outbox_dead_letter`` event, and the rows behind it go on. Alarms are never moved for link losses.

Methods are synchronous and thread-safe (one connection behind a lock); the client calls them through
``asyncio.to_thread`` so the event loop never waits on an fsync.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal
from dataclasses import dataclass
from pathlib import Path

from qrad_agent.errors import AgentError
from qrad_agent.files import private_sqlite
from qrad_agent.sync.contract import Kind

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    drop_class INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    correlation BLOB,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_class ON outbox (drop_class, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    correlation BLOB,
    created REAL NOT NULL,
    reason TEXT NOT NULL,
    moved REAL NOT NULL
);
"""
MAX_LINK_LOSSES = 5
"""Connections lost in a row while one row was the oldest unacknowledged publish before it is taken as the
cause (a broker that closes the link on it) and moved to the dead letters."""


class OutboxError(AgentError):
    """The outbox database cannot be opened or written."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    seq: int
    kind: Kind
    topic: str
    payload: bytes
    retain: bool
    correlation: bytes | None


@dataclass(frozen=True)
class Stored:
    """Result of `Outbox.put`: the row id and sequence number, or ``dropped`` (with the seq it consumed)."""

    id: int | None
    seq: int
    evicted: int = 0

    @property
    def dropped(self) -> bool:
        return self.id is None


class Outbox:
    """Durable, bounded FIFO of messages to publish. See the module docstring for the drop policy."""

    def __init__(self, path: Path, max_messages: int = 100_000, durability: str = "full") -> None:
        self.path = path
        self.max_messages = max_messages
        self._lock = threading.Lock()
        try:
            self._db = private_sqlite(path)  # 0600 with its -wal/-shm, whatever the umask
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA cache_size=-256")  # 256 KiB page cache: a fleet host runs many
            self._db.executescript(SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
            if "link_losses" not in columns:  # an outbox written by an older agent
                self._db.execute("ALTER TABLE outbox ADD COLUMN link_losses INTEGER NOT NULL DEFAULT 0")
            self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {path}: {exc}") from exc
        self.dropped = 0
        self.evicted = 0
        self.dead_lettered = 0

    def put(self, kind: Kind, topic: str, payload: Callable[[int], bytes], *, retain: bool = False,
            correlation: bytes | None = None) -> Stored:
        """Store one message; ``payload(seq)`` builds its bytes with the sequence number assigned here.

        Returns when the row is committed (durable per ``durability``). Applies the drop policy when full.
        """
        with self._lock, self._transaction():
            seq = self._next_seq()
            evicted = 0
            if self._count >= self.max_messages:
                if self._evict_one(kind.drop_class):
                    evicted = 1
                elif kind.drop_class < 2:
                    self.dropped += 1
                    return Stored(None, seq)
            cur = self._db.execute(
                "INSERT INTO outbox (seq, kind, drop_class, topic, payload, retain, correlation, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, int(kind), kind.drop_class, topic, payload(seq), int(retain), correlation, time.time()))
            self._count += 1 - evicted
            return Stored(cur.lastrowid, seq, evicted)

    def pending(self, after_id: int = 0, limit: int = 100, skip: Iterable[int] = ()) -> list[OutboxRow]:
        """Up to ``limit`` rows with id > ``after_id`` in order, leaving out the ids in ``skip``."""
        skipped = set(skip)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, seq, kind, topic, payload, retain, correlation FROM outbox WHERE id > ?"
                " ORDER BY id LIMIT ?", (after_id, limit + len(skipped))).fetchall()
        out = [OutboxRow(r[0], r[1], Kind(r[2]), r[3], bytes(r[4]), bool(r[5]), r[6])
               for r in rows if r[0] not in skipped]
        return out[:limit]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows; returns how many existed (an evicted row may already be gone)."""
        batch = [(i,) for i in ids]
        if not batch:
            return 0
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM outbox WHERE id = ?", batch)
            removed = self._db.total_changes - before
            self._count -= removed
            return removed

    def dead_letter(self, row_id: int, reason: str) -> OutboxRow | None:
        """Move a row to the dead letters with ``reason``; returns it (None when it is gone already)."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT id, seq, kind, topic, payload, retain, correlation, created FROM outbox"
                                   " WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return None
            self._db.execute("INSERT OR REPLACE INTO dead_letter (id, seq, kind, topic, payload, retain, correlation,"
                             " created, reason, moved) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (*row, reason, time.time()))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            self._count -= 1
            self.dead_lettered += 1
        return OutboxRow(row[0], row[1], Kind(row[2]), row[3], bytes(row[4]), bool(row[5]), row[6])

    def note_link_lost(self, row_id: int) -> int:
        """The link dropped with ``row_id`` the oldest publish in flight: returns how many times in a row
        (0 when the row is gone). `clear_link_losses` resets the count once a row is acknowledged."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE outbox SET link_losses = link_losses + 1 WHERE id = ?", (row_id,))
            row = self._db.execute("SELECT link_losses FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return int(row[0]) if row else 0

    def clear_link_losses(self) -> None:
        """A publish was acknowledged: the link carries messages, earlier losses were not a row's fault."""
        with self._lock, self._transaction():
            self._db.execute("UPDATE outbox SET link_losses = 0 WHERE link_losses > 0")

    def dead_letters(self) -> list[tuple[int, int, str, int, str]]:
        """The dead letters: (row id, seq, kind name, payload bytes, reason), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, seq, kind, length(payload), reason FROM dead_letter ORDER BY id"
                                    ).fetchall()
        return [(r[0], r[1], Kind(r[2]).name.lower(), r[3], r[4]) for r in rows]

    def __len__(self) -> int:
        return self._count

    def counts(self) -> dict[str, int]:
        """Stored rows by kind name."""
        with self._lock:
            rows = self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall()
        return {Kind(k).name.lower(): n for k, n in rows}

    def status(self) -> dict[str, int]:
        with self._lock:
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
        return {"stored": self._count, "max": self.max_messages, "dropped": self.dropped,
                "evicted": self.evicted, "dead_letters": dead, "next_seq": self.peek_seq()}

    def peek_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return row[0] if row else 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _next_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = row[0] if row else 1
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (seq + 1,))
        return seq

    def _evict_one(self, up_to_class: int) -> bool:
        row = self._db.execute(
            "SELECT id FROM outbox WHERE drop_class <= ? AND drop_class < 2 ORDER BY drop_class, id LIMIT 1",
            (up_to_class,)).fetchone()
        if row is None:
            return False
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        self.evicted += 1
        return True

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error; sqlite errors become OutboxError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None:
            self._db.execute("COMMIT")
            return False
        self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox: {exc}") from exc
        return False
