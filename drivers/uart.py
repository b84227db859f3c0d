"""A serial port for the UART sensor drivers (MH-Z19B, PMS5003), driven from the asyncio loop.

pyserial opens and configures the port (termios raw mode, 8N1, baud rate, an exclusive flock so two
agents cannot share a sensor); the I/O itself goes through the port's file descriptor, which pyserial
opens with O_NONBLOCK: a read returns what the kernel holds now, and waiting for bytes is a
``loop.add_reader`` future, so nothing here blocks the event loop and no thread is needed once open.
Only ``open`` runs in a thread (``asyncio.to_thread``): opening a USB adapter can take a while.

A lost port (USB adapter unplugged, pseudo-terminal master closed) shows as EIO or an end of file on the
descriptor, or as the device path gone: each raises DriverError so the hub reopens with backoff.
"""

from __future__ import annotations

import asyncio
import os
import termios

import serial

from qrad_drivers.base import DriverError

ANSWER_SHARE = 0.8
"""Share of the driver's ``timeout_s`` a read waits for bytes, so the driver reports "no answer" itself
before the hub's own ``wait_for(read, timeout_s)`` cancels it."""
READ_CHUNK = 4096
MAX_DRAIN = 64 * 1024
"""Most bytes one drain returns; a tty's input queue holds 4 KiB, so this only bounds a runaway stream."""


def _close_opened(opening: asyncio.Future[serial.Serial]) -> None:
    """Close a port whose opening was abandoned (the read was cancelled while the thread ran)."""
    if not opening.cancelled() and opening.exception() is None:
        try:
            opening.result().close()
        except (serial.SerialException, OSError):
            pass


def answer_window_s(timeout_s: float) -> float:
    """How long a read waits for the device inside a hub read bounded by ``timeout_s``."""
    return timeout_s * ANSWER_SHARE


class UartPort:
    """One serial port: ``open`` (in a thread), non-blocking ``drain``/``write``, ``wait_readable``."""

    def __init__(self, port: str, baudrate: int, parity: str = "N", stopbits: int = 1) -> None:
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.stale_bytes = 0
        """Bytes discarded by `send_request` because they arrived while the request was being sent."""
        self._serial: serial.Serial | None = None

    @property
    def char_time_s(self) -> float:
        """Seconds one character takes on the line: start bit, 8 data bits, parity, stop bits."""
        return (1 + 8 + (self.parity != "N") + self.stopbits) / self.baudrate

    async def send_request(self, request: bytes, guard_chars: float = 3.5) -> bool:
        """Flush, send ``request`` and discard what arrives while it is on the line.

        Whatever is in the input before the request is stale (flushed); so is whatever arrives before the
        request has left the line plus ``guard_chars`` character times (a device answers only after it has
        received the request: Modbus RTU demands 3.5 characters of silence first), such as a late answer
        to an earlier request. Arrivals are watched as they happen (the loop's reader wakes on the first
        byte), so timer lateness does not let a stale answer through; bytes first noticed after the guard
        may be the real answer and are kept. False when the output queue took only part of the request.
        Raises DriverError when the port is lost.
        """
        loop = asyncio.get_running_loop()
        self.reset_input()
        self.drain()
        sent_at = loop.time()
        if self.write(request) != len(request):
            return False
        guard_end = sent_at + (len(request) + guard_chars) * self.char_time_s
        while await self.wait_readable(guard_end - loop.time()):
            if loop.time() > guard_end:
                break  # noticed after the guard: possibly the answer
            self.stale_bytes += len(self.drain())
        return True

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        """Open and configure the port. Raises DriverError when it is missing, busy or unusable."""
        self.close()
        opening = asyncio.ensure_future(asyncio.to_thread(
            serial.Serial, self.port, self.baudrate, timeout=0, write_timeout=0, exclusive=True,
            parity=self.parity, stopbits=self.stopbits))
        try:
            self._serial = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the thread still finishes: close what it opens, or the flock leaks
            opening.add_done_callback(_close_opened)
            raise
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(f"cannot open {self.port}: {exc}") from exc
        try:
            self._block_on_empty(self._serial.fileno())
        except (termios.error, OSError) as exc:
            self.close()
            raise DriverError(f"cannot configure {self.port}: {exc}") from exc

    @staticmethod
    def _block_on_empty(fd: int) -> None:
        """VMIN=1, VTIME=0: with O_NONBLOCK an empty read is then EAGAIN, and an empty result only
        means a hang-up. (pyserial's timeout=0 sets VMIN=0, where an empty read returns 0 bytes.)"""
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)

    def close(self) -> None:
        """Close the port; never raises."""
        ser, self._serial = self._serial, None
        if ser is None:
            return
        try:
            ser.close()
        except (serial.SerialException, OSError):  # already gone: nothing left to release
            pass

    def _fd(self) -> int:
        if self._serial is None:
            raise DriverError(f"{self.port} is not open")
        if not os.path.exists(self.port):
            raise DriverError(f"{self.port} vanished")
        return self._serial.fileno()

    def reset_input(self) -> None:
        """Discard whatever the kernel buffered (tcflush). Raises DriverError when the port is lost."""
        try:
            termios.tcflush(self._fd(), termios.TCIFLUSH)
        except (termios.error, OSError) as exc:  # termios.error is not an OSError
            raise DriverError(f"{self.port}: flush failed: {exc}") from exc

    def write(self, data: bytes) -> int:
        """Queue ``data`` for sending without waiting; the number of bytes the kernel took."""
        fd = self._fd()
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise DriverError(f"{self.port}: write failed: {exc}") from exc

    def drain(self) -> bytes:
        """Every byte received and not yet read (possibly none). Raises DriverError when the port is lost."""
        fd = self._fd()
        chunks: list[bytes] = []
        total = 0
        while total < MAX_DRAIN:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                raise DriverError(f"{self.port}: read failed: {exc}") from exc
            if not chunk:  # end of file on a tty: the other end hung up
                raise DriverError(f"{self.port}: hung up")
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    async def wait_readable(self, timeout_s: float) -> bool:
        """Wait until bytes (or a hang-up) can be read, at most ``timeout_s``; False on timeout."""
        if timeout_s <= 0:
            return False
        fd = self._fd()
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            async with asyncio.timeout(timeout_s):
                await ready
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)
