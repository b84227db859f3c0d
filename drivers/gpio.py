"""Digital inputs (presence detector, window and door contacts) on GPIO lines.

Two backends:
- ``sysfs`` (default): the legacy interface (kernel Documentation/ABI/obsolete/sysfs-gpio,
  drivers/gpio/gpiolib-sysfs.c). An exported line is ``<sysfs_root>/class/gpio/gpioN`` with ``value``
  (0/1), ``direction`` (in/out) and ``active_low`` (inverts ``value``). N is the global GPIO number, which
  is not always the chip offset (recent Raspberry Pi kernels number the header pins from 512: prefer gpiod
  there). Lines must be exported beforehand (udev rule or unit); this driver does not write ``export``.
- ``gpiod``: the GPIO character device through the libgpiod v2 Python binding (PyPI ``gpiod``), ``chip`` a
  path such as /dev/gpiochip0 and the line numbers chip offsets. The module is imported only in ``open``.

``lines = {presence = 17, window = 27}`` maps channels to lines; ``active_low = {window = true}`` says the
contact is active when the line is physically low. With sysfs the physical level is ``value`` XOR the line's
own ``active_low`` file, so the config means the same whatever the export did. Readings are 0/1, quantity
"state", unit "bool"; a failed or garbled read is FAULT. Contacts legitimately hold still: no stuck check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverError, Reading, fault

CONSUMER = "qrad-agent"


class GpioConfig(DriverConfig):
    """GPIO inputs: ``lines`` channel -> line number, optional ``active_low`` channel -> bool."""

    type: Literal["gpio"] = "gpio"
    backend: Literal["sysfs", "gpiod"] = "sysfs"
    chip: str = Field("/dev/gpiochip0", description="gpiod backend only")
    lines: dict[str, int] = Field(min_length=1)
    active_low: dict[str, bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_channels(self) -> GpioConfig:
        unknown = sorted(set(self.active_low) - set(self.lines))
        if unknown:
            raise ValueError(f"active_low names channels not in lines: {unknown}")
        if any(line < 0 for line in self.lines.values()):
            raise ValueError("line numbers must be >= 0")
        return self


def read_bit(path: Path) -> int:
    """The 0/1 in a sysfs GPIO file. Raises OSError or ValueError."""
    text = path.read_text().strip()
    if text not in ("0", "1"):
        raise ValueError(f"expected 0 or 1, read {text[:20]!r}")
    return int(text)


class GpioDriver(Driver):
    """Reads the configured GPIO lines, 1 = active."""

    type_name = "gpio"
    config_model = GpioConfig
    nominal_period_s = 1.0
    cfg: GpioConfig

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        self._request: Any = None  # gpiod.LineRequest when the gpiod backend is open
        self._active: Any = None  # gpiod.line.Value.ACTIVE
        return tuple(ChannelSpec(channel, "state", "bool", 0.0, 1.0, self.period_s)
                     for channel in self.cfg.lines)

    def _line_dir(self, channel: str) -> Path:
        return self.context.sysfs_root / "class" / "gpio" / f"gpio{self.cfg.lines[channel]}"

    async def open(self) -> None:
        if self.cfg.backend == "gpiod":
            self._open_gpiod()
            return
        missing = [f"gpio{line}" for channel, line in self.cfg.lines.items()
                   if not (self._line_dir(channel) / "value").exists()]
        if missing:
            where = self.context.sysfs_root / "class" / "gpio"
            raise DriverError(f"GPIO lines not exported under {where}: {', '.join(missing)}")

    def _open_gpiod(self) -> None:
        try:
            import gpiod  # optional: libgpiod v2 binding
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise DriverError('gpiod not installed: pip install gpiod (libgpiod v2 binding), '
                              'or use backend = "sysfs"') from exc
        config = {offset: gpiod.LineSettings(direction=Direction.INPUT,
                                             active_low=self.cfg.active_low.get(channel, False))
                  for channel, offset in self.cfg.lines.items()}
        try:
            self._request = gpiod.request_lines(self.cfg.chip, consumer=CONSUMER, config=config)
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot request lines {sorted(config)} on {self.cfg.chip}: {exc}") from exc
        self._active = Value.ACTIVE

    async def read(self, t_s: float) -> list[Reading]:
        if self.cfg.backend == "gpiod":
            return await self._read_gpiod(t_s)
        return [self._read_sysfs(spec, t_s) for spec in self.channels]

    def _read_sysfs(self, spec: ChannelSpec, t_s: float) -> Reading:
        folder = self._line_dir(spec.name)
        try:
            level = read_bit(folder / "value")
            if (folder / "active_low").exists():
                level ^= read_bit(folder / "active_low")
        except (OSError, ValueError) as exc:
            return fault(spec, t_s, f"{folder}: {exc}")
        state = level ^ int(self.cfg.active_low.get(spec.name, False))
        return Reading(spec.name, float(state), spec.unit, t_s)

    async def _read_gpiod(self, t_s: float) -> list[Reading]:
        if self._request is None:
            self._open_gpiod()
        offsets = list(self.cfg.lines.values())
        try:
            values = self._request.get_values(offsets)
        except OSError as exc:
            await self.close()  # reopened at the next read
            return self.faults(t_s, f"{self.cfg.chip}: {exc}")
        return [Reading(spec.name, float(value == self._active), spec.unit, t_s)
                for spec, value in zip(self.channels, values, strict=True)]

    async def close(self) -> None:
        request, self._request = self._request, None
        if request is not None:
            try:
                request.release()
            except OSError:
                pass
