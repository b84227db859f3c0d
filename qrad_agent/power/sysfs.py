"""Reading and writing sysfs attributes, with OS errors wrapped into `ActuatorError`.

sysfs attributes hold one ASCII value each (kernel Documentation/filesystems/sysfs.rst). Writes are
synchronous: the kernel applies a cpufreq, powercap or cgroup attribute within the write() call, and a
rejected value comes back as the write's errno (EINVAL for a bad value, EACCES/EPERM without rights).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from qrad_agent.errors import ActuatorError


def read_text(path: Path) -> str:
    """The attribute's content, stripped. Raises ActuatorError naming the path and errno."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ActuatorError(f"read {path}: {_describe(exc)}") from exc


def read_int(path: Path) -> int:
    """The attribute as an integer. Raises ActuatorError if unreadable or not an integer."""
    text = read_text(path)
    try:
        return int(text.split()[0])
    except (ValueError, IndexError) as exc:
        raise ActuatorError(f"read {path}: not an integer: {text[:40]!r}") from exc


def write_text(path: Path, value: str) -> None:
    """Write ``value`` in one write() call, as sysfs expects. Raises ActuatorError with the errno name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        raise ActuatorError(f"write {path}: {_describe(exc)}") from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise ActuatorError(f"write {value!r} to {path}: {_describe(exc)}") from exc
    finally:
        os.close(fd)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"{name} ({exc.strerror})"
