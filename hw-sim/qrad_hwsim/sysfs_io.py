"""Small helpers for the simulated sysfs tree: atomic writes and tolerant reads.

Files the simulator owns (readings such as energy_uj, temp1_input, scaling_cur_freq) are replaced
atomically (write a temporary file in the same directory, then rename), so a reader never sees a
half-written value. Files the agent writes (limits) are only read: the simulator never rewrites
them, so it cannot clobber a write in progress; a value that does not parse is ignored and the
previous one kept (the real kernel would refuse the write with EINVAL; here the garbage stays in the
file but has no effect).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` plus a newline, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="ascii")
    os.replace(tmp, path)


class PublishedFile:
    """A file the simulator owns; ``publish`` rewrites it only when its text changes (an atomic
    rename costs a fraction of a millisecond, and a board has dozens of such files)."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self._text = text
        if text is not None:
            write_text_atomic(path, text)

    def publish(self, value: object) -> None:
        """Write ``value`` (as text) unless the file already shows it."""
        text = str(value)
        if text != self._text:
            write_text_atomic(self.path, text)
            self._text = text


def write_files(folder: Path, values: dict[str, object]) -> None:
    """Create ``folder`` and write each ``name: value`` as a sysfs-style one-line file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        write_text_atomic(folder / name, str(value))


def read_text(path: Path) -> str | None:
    """Stripped content of ``path``, or None if it is missing or unreadable."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def read_int(path: Path, previous: int) -> int:
    """Integer in ``path``; ``previous`` if the file is missing, empty or not an integer."""
    text = read_text(path)
    if not text:
        return previous
    try:
        return int(text.split()[0])
    except ValueError:
        return previous
