"""Small helpers for the simulated sysfs tree: untorn writes and tolerant reads.

Files the simulator owns (readings such as energy_uj, temp1_input, scaling_cur_freq) must never be
seen half-written. ``write_text_atomic`` writes a temporary file and renames it over the old one;
on ext4 that costs about 0.5 ms (the rename forces the data out: auto_da_alloc), which would make a
simulated week take minutes. ``publish_text`` therefore overwrites in place with one pwrite when the
new text is at least as long as the old (a reader sees the old or the new digits, never a tail of
stale ones) and falls back to the rename when it is shorter (a counter wrap, 10.00 -> 9.99 °C).
A tmpfs root (/dev/shm) is faster still.

Files the agent writes (limits) are only read: the simulator never rewrites them, so it cannot
clobber a write in progress; a value that does not parse is ignored and the
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


def publish_text(path: Path, text: str) -> None:
    """Show ``text`` plus a newline in ``path`` without a reader ever seeing a mix of old and new."""
    data = (text + "\n").encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        write_text_atomic(path, text)
        return
    try:
        if len(data) >= os.fstat(fd).st_size:
            os.pwrite(fd, data, 0)
            return
    finally:
        os.close(fd)
    write_text_atomic(path, text)


class PublishedFile:
    """A file the simulator owns; ``publish`` rewrites it only when its text changes (a board has
    dozens of such files and most readings change rarely)."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self._text = text
        if text is not None:
            publish_text(path, text)

    def publish(self, value: object) -> None:
        """Write ``value`` (as text) unless the file already shows it."""
        text = str(value)
        if text != self._text:
            publish_text(self.path, text)
            self._text = text


def write_files(folder: Path, values: dict[str, object]) -> None:
    """Create ``folder`` and write each ``name: value`` as a sysfs-style one-line file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        write_text_atomic(folder / name, str(value))


def read_text(path: Path) -> str | None:
    """Stripped content of ``path``, or None if it is missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).decode("ascii", errors="replace").strip()
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
