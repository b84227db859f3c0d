"""The install root of side-by-side releases, the atomic switch, the update journal and its lock.

    <root>/releases/<version>/venv/      one virtual environment per installed version
    <root>/releases/<version>/.complete  written last: a release without it is a partial install (garbage)
    <root>/current  -> releases/<version>   what the unit runs (ExecStart=<root>/current/venv/bin/qrad-agent)
    <root>/previous -> releases/<version>   the version to roll back to
    <root>/update.lock            flock(2) held by the one updater at work; released by the kernel if it dies
    <root>/update-journal.json    the update in progress: phase, from, to (written before each step)
    <root>/update-history.jsonl   every update's outcome, one JSON object a line
    <root>/crash-loop             written by the supervisor when the agent crash-loops

A symlink is switched by creating a new one beside it and rename(2) over it: readers see the old target or
the new one, never none. Journal writes are atomic too (state.save_state: temp file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qrad_agent.state import load_state, save_state

VERSION_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+-_!")


class LockBusy(Exception):
    """Another updater holds the lock."""


class Layout:
    """Paths and atomic operations of one install root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"
        self.previous = self.root / "previous"
        self.journal_path = self.root / "update-journal.json"
        self.history_path = self.root / "update-history.jsonl"
        self.crash_flag = self.root / "crash-loop"
        self.lock_path = self.root / "update.lock"

    def release_dir(self, version: str) -> Path:
        if not version or not set(version) <= VERSION_CHARS or version.startswith("."):
            raise ValueError(f"version {version!r} cannot name a release directory")
        return self.releases / version

    def is_complete(self, version: str | None) -> bool:
        return version is not None and (self.release_dir(version) / ".complete").is_file()

    def _target(self, link: Path) -> str | None:
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    def current_version(self) -> str | None:
        """The version ``current`` points to, None when nothing is installed."""
        return self._target(self.current)

    def previous_version(self) -> str | None:
        return self._target(self.previous)

    def agent_exe(self) -> Path:
        return self.current / "venv" / "bin" / "qrad-agent"

    # -- atomic changes --

    def _link(self, link: Path, version: str) -> None:
        tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
        os.symlink(Path("releases") / version, tmp)
        os.replace(tmp, link)
        self.fsync_root()

    def switch(self, version: str, previous: str | None) -> None:
        """``current`` -> version, ``previous`` -> previous (removed when None). Raises OSError."""
        if previous is not None:
            self._link(self.previous, previous)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.previous.unlink()
        self._link(self.current, version)

    def fsync_root(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def setup(self) -> None:
        self.releases.mkdir(parents=True, exist_ok=True)

    # -- journal, history, lock --

    def journal(self) -> dict[str, Any]:
        return load_state(self.journal_path)

    def write_journal(self, **fields: Any) -> None:
        save_state(self.journal_path, {**fields, "at": time.time()})

    def clear_journal(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        self.fsync_root()

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append an outcome to the history (fsynced); returns it with its id and time."""
        entry = {"id": uuid.uuid4().hex[:12], "at": time.time(), **entry}
        with self.history_path.open("a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def history(self) -> list[dict[str, Any]]:
        """Every recorded outcome, oldest first; unreadable lines are skipped."""
        entries = []
        try:
            lines = self.history_path.read_text().splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the update lock. Raises LockBusy when another process holds it (and not ``wait``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError as exc:
                raise LockBusy(str(self.lock_path)) from exc
            yield
        finally:
            os.close(fd)

    def remove_partial(self, keep: set[str]) -> list[str]:
        """Remove release directories without ``.complete`` (and stray temp links); returns their names."""
        removed = []
        if self.releases.is_dir():
            for d in self.releases.iterdir():
                if d.name not in keep and not (d / ".complete").is_file():
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d.name)
        for tmp in self.root.glob(".current.*"):
            tmp.unlink(missing_ok=True)
        for tmp in self.root.glob(".previous.*"):
            tmp.unlink(missing_ok=True)
        return removed

    def prune(self, keep: set[str]) -> None:
        """Remove complete releases other than ``keep`` (current and previous)."""
        if self.releases.is_dir():
            for d in self.releases.iterdir():
                if d.name not in keep:
                    shutil.rmtree(d, ignore_errors=True)
