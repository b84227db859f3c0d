"""A serial line for emulated UART sensors: a pseudo-terminal pair on the asyncio loop.

The emulator owns the master side; the driver opens the slave (``/dev/pts/N``) like any serial port, and a
symlink at a stable path (``<root>/dev/ttyCO2``) lets a config name it. Both sides are put in raw mode (no
echo, no line editing, no CR/NL translation). The emulator also keeps the slave open, so the master never
sees EIO when a driver closes and reopens the port. The master is non-blocking: writes that find the
line's buffer full are dropped, as on a real UART nobody reads.

``UartDevice`` is the common base of the emulations: the link, a random generator, a clock (the loop's
by default, injectable for tests), the fault switch and ``run``, which serves until cancelled and then
closes the descriptors and removes the symlink: to the driver, the port has vanished.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

COMMON_FAULTS = ("ok", "unplugged", "garbage", "partial", "bad_checksum", "stuck", "out_of_range", "spike",
                 "drift", "noisy")


class PtyLink:
    """A raw pseudo-terminal pair; ``path`` is what a driver opens (the symlink if one was asked for)."""

    def __init__(self, link_path: str | os.PathLike[str] | None = None) -> None:
        self.closed = False
        self.link_path: Path | None = None
        self.master_fd, self._slave_fd = os.openpty()
        try:
            for fd in (self.master_fd, self._slave_fd):
                tty.setraw(fd)
            os.set_blocking(self.master_fd, False)
            self.slave_path = os.ttyname(self._slave_fd)
            if link_path is not None:
                self._link(Path(link_path))
        except BaseException:
            self.close()
            raise

    def _link(self, link_path: Path) -> None:
        """Point ``link_path`` at the slave, replacing an older link atomically."""
        link_path.parent.mkdir(parents=True, exist_ok=True)
        staging = link_path.with_name(f".{link_path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        staging.symlink_to(self.slave_path)
        os.replace(staging, link_path)
        self.link_path = link_path

    @property
    def path(self) -> str:
        return str(self.link_path) if self.link_path is not None else self.slave_path

    def read(self) -> bytes:
        """What the driver sent, possibly nothing; never blocks."""
        if self.closed:  # the descriptor number may already belong to another file
            return b""
        try:
            return os.read(self.master_fd, 4096)
        except (BlockingIOError, OSError):
            return b""

    def write(self, data: bytes) -> int:
        """Send ``data`` toward the driver; bytes that do not fit the line's buffer are lost."""
        if self.closed:
            return 0
        try:
            return os.write(self.master_fd, data)
        except OSError:  # EAGAIN: buffer full; EIO: closed
            return 0

    def close(self) -> None:
        """Close both sides and remove the symlink if it still points here; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.link_path is not None and self.link_path.is_symlink():
            if os.readlink(self.link_path) == self.slave_path:
                self.link_path.unlink(missing_ok=True)
        for fd in (self.master_fd, self._slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class UartDevice:
    """Base of an emulated UART sensor: link, rng, clock, faults; ``run`` serves until cancelled."""

    faults: ClassVar[tuple[str, ...]] = COMMON_FAULTS

    def __init__(self, link_path: str | os.PathLike[str] | None, rng: np.random.Generator | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.link_path = Path(link_path) if link_path is not None else None
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self._clock = clock
        self.fault = "ok"
        self.fault_since_s = 0.0
        self.frames_in_fault = 0
        self.link: PtyLink | None = None
        self.ready = asyncio.Event()

    @property
    def path(self) -> str:
        """The port a driver opens: the symlink, or the slave path when there is none."""
        if self.link is None:
            raise RuntimeError("device not running")
        return self.link.path

    def now(self) -> float:
        """Seconds on the injected clock, else the running loop's, else the monotonic clock."""
        if self._clock is not None:
            return self._clock()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def set_fault(self, kind: str) -> None:
        """Switch to fault ``kind`` (one of ``faults``); "ok" clears any fault."""
        if kind not in self.faults:
            raise ValueError(f"fault must be one of {self.faults}, not {kind!r}")
        self.on_fault(kind)
        self.fault, self.fault_since_s, self.frames_in_fault = kind, self.now(), 0

    def on_fault(self, kind: str) -> None:
        """Hook before the fault changes (e.g. freeze the value for "stuck")."""

    def garbage(self, size: int, exclude: int) -> bytes:
        """``size`` random bytes without ``exclude`` (a frame's first byte), so they never form a frame."""
        values = self.rng.integers(0, 255, size=size)
        return bytes(int(v) + (v >= exclude) for v in values)

    def send(self, data: bytes) -> int:
        return self.link.write(data) if self.link is not None else 0

    async def run(self) -> None:
        """Open the link, serve until cancelled, then close it (the port vanishes)."""
        loop = asyncio.get_running_loop()
        self.link = PtyLink(self.link_path)
        loop.add_reader(self.link.master_fd, self._on_readable)
        self.ready.set()
        try:
            await self.serve()
        finally:
            loop.remove_reader(self.link.master_fd)
            self.link.close()
            self.ready.clear()

    async def serve(self) -> None:
        """The device's own activity; request-driven devices just wait."""
        await asyncio.Future()

    def _on_readable(self) -> None:
        assert self.link is not None
        data = self.link.read()
        if data:
            self.on_bytes(data)

    def on_bytes(self, data: bytes) -> None:
        """Bytes the driver sent."""
