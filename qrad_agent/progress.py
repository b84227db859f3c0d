"""A one-line text progress bar for long commands, drawn only on a terminal.

`ProgressBar(stream)` redraws ``[#####.....]  42 %  label`` in place (carriage return) each time the
whole percentage changes, so a week of simulation costs at most 101 writes. Off a terminal (a pipe, a
file, CI's log) it writes nothing at all, so logs and captured output stay clean.
"""

from __future__ import annotations

from typing import TextIO

BAR_WIDTH = 30
"""Characters of the bar between its brackets."""


class ProgressBar:
    """Fraction done (0..1) shown as a bar on ``stream`` when it is a terminal; a no-op otherwise."""

    def __init__(self, stream: TextIO, label: str = "") -> None:
        self.stream = stream
        self.label = label
        self.enabled = _is_terminal(stream)
        self._shown_percent = -1

    def update(self, fraction: float) -> None:
        """Show ``fraction`` done (clamped to 0..1); redraws only when the whole percentage changes."""
        if not self.enabled:
            return
        fraction = min(1.0, max(0.0, fraction)) if fraction == fraction else 0.0
        percent = int(fraction * 100)
        if percent == self._shown_percent:
            return
        self._shown_percent = percent
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {percent:3d} %  {self.label}")
        self.stream.flush()

    def close(self) -> None:
        """Erase the bar's line (the command's own output follows on a clean line)."""
        if self.enabled and self._shown_percent >= 0:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        self._shown_percent = -1


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
