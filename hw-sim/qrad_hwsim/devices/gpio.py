"""Exported GPIO input lines in the legacy sysfs interface: ``class/gpio/gpioN/{value,direction,active_low}``.

As drivers/gpio/gpiolib-sysfs.c shows them: ``class/gpio/export`` and ``unexport`` (write-only control
files; written here once, never read back), and per exported line ``direction`` "in", ``active_low`` 0/1
and ``value`` = physical level XOR active_low. ``set(line, level)`` sets the physical level (what the
contact does to the pin).

Faults (``set_fault``, all lines at once): "ok", "unplugged" (the lines are unexported: the gpioN
directories disappear), "garbage" (``value`` holds text that is not 0/1), "out_of_range" (``value`` "2"),
"stuck" (``set`` no longer reaches the files; undetectable from the files, for tests of the layers above).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..sysfs_io import publish_text, write_files

GPIO_FAULTS = ("ok", "unplugged", "garbage", "out_of_range", "stuck")
GARBAGE = "?x"


class GpioLines:
    """Input lines ``{number: physical level}``, optionally sysfs active-low (``active_low={27: True}``)."""

    def __init__(self, root: Path, levels: dict[int, int], active_low: dict[int, bool] | None = None) -> None:
        self.base = Path(root) / "class" / "gpio"
        self.levels = {line: int(bool(level)) for line, level in levels.items()}
        self.active_low = {line: bool((active_low or {}).get(line, False)) for line in levels}
        self.fault = "ok"
        write_files(self.base, {"export": "", "unexport": ""})
        self._export()

    def line_dir(self, line: int) -> Path:
        """``class/gpio/gpio<line>``."""
        return self.base / f"gpio{line}"

    def _export(self) -> None:
        for line in self.levels:
            write_files(self.line_dir(line), {"direction": "in", "active_low": int(self.active_low[line]),
                                              "edge": "none"})
            self._publish(line)

    def value_text(self, line: int) -> str:
        """What ``value`` shows for ``line`` under the current fault."""
        if self.fault == "garbage":
            return GARBAGE
        if self.fault == "out_of_range":
            return "2"
        return str(self.levels[line] ^ int(self.active_low[line]))

    def _publish(self, line: int) -> None:
        if self.fault not in ("unplugged", "stuck"):
            publish_text(self.line_dir(line) / "value", self.value_text(line))

    def set(self, line: int, level: int) -> None:
        """Set the physical level (0/1) of ``line`` and publish."""
        if line not in self.levels:
            raise KeyError(f"GPIO {line} is not simulated; lines: {sorted(self.levels)}")
        self.levels[line] = int(bool(level))
        self._publish(line)

    def set_fault(self, kind: str) -> None:
        """Switch every line to fault ``kind`` (see GPIO_FAULTS)."""
        if kind not in GPIO_FAULTS:
            raise ValueError(f"GPIO fault must be one of {GPIO_FAULTS}, not {kind!r}")
        self.fault = kind
        if kind == "unplugged":
            for line in self.levels:
                shutil.rmtree(self.line_dir(line), ignore_errors=True)
        elif kind != "stuck":
            self._export()
