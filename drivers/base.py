"""The driver model: channel declarations, readings and their quality.

A driver reads one hardware family (hwmon, 1-Wire, a UART sensor ...) and turns raw values into
`Reading`s in SI-ish units (°C, %RH, ppm, W). A failure never raises out of `read()`: it becomes a
reading whose quality says what went wrong, so the thermostat and safety layer can act on it.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Quality(enum.Enum):
    """How far a reading can be trusted."""

    OK = "ok"
    STALE = "stale"  # the value stopped changing or arrived too long ago
    OUT_OF_RANGE = "out_of_range"  # outside the channel's valid range
    FAULT = "fault"  # the read failed (file missing, I/O error, garbled data)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Declaration of one channel: what it measures and what values are plausible.

    ``valid_min``/``valid_max`` bound a plausible value in ``unit``; ``period_s`` is the nominal poll period.
    """

    name: str
    quantity: str
    unit: str
    valid_min: float
    valid_max: float
    period_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of a channel: value in the channel's unit, loop-clock time in s, quality and reason."""

    channel: str
    value: float
    unit: str
    t_s: float
    quality: Quality = Quality.OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the value can be used for control."""
        return self.quality is Quality.OK and math.isfinite(self.value)


def check_range(spec: ChannelSpec, value: float, t_s: float) -> Reading:
    """Build a reading for ``value``, flagged OUT_OF_RANGE when outside ``spec``'s valid range."""
    if not (spec.valid_min <= value <= spec.valid_max):
        reason = f"{value:g} {spec.unit} outside [{spec.valid_min:g}, {spec.valid_max:g}]"
        return Reading(spec.name, value, spec.unit, t_s, Quality.OUT_OF_RANGE, reason)
    return Reading(spec.name, value, spec.unit, t_s)


def fault(spec: ChannelSpec, t_s: float, reason: str) -> Reading:
    """A reading that carries no value, only why the read failed."""
    return Reading(spec.name, math.nan, spec.unit, t_s, Quality.FAULT, reason)


class DriverError(Exception):
    """The device cannot be reached (port gone, no answer, file vanished): the hub reconnects with backoff.

    Garbled data is not a DriverError: it becomes readings with quality FAULT and the reason.
    """


class DriverConfig(BaseModel):
    """Fields every sensor entry of the config has; each driver extends it with its own (port, path ...).

    ``type`` selects the driver in the registry; ``name`` names the device and prefixes its channels.
    ``period_s`` overrides the driver's nominal poll period; ``timeout_s`` bounds one read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    period_s: float | None = Field(None, gt=0)
    timeout_s: float = Field(2.0, gt=0)


@dataclass(frozen=True)
class DriverContext:
    """What the agent gives every driver: where the kernel's sysfs is (a hw-sim tree in tests)."""

    sysfs_root: Path = Path("/sys")


class Driver(abc.ABC):
    """One device: declares its channels, opens its transport, and reads all its channels at once.

    Contract: `open` may raise DriverError (the hub retries with backoff); `read` returns one Reading per
    channel of `channels` (in any order) and raises only DriverError, when the transport is lost (the hub
    then marks every channel FAULT and reopens). A bad frame, a checksum failure or an out-of-range value is
    a reading with the matching quality, never an exception. `close` never raises.
    Blocking I/O is done off the event loop (``asyncio.to_thread``) or with the loop's readers.
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[DriverConfig]]
    nominal_period_s: ClassVar[float] = 10.0

    def __init__(self, cfg: DriverConfig, context: DriverContext) -> None:
        self.cfg = cfg
        self.context = context
        self.period_s = cfg.period_s or self.nominal_period_s
        self.channels: tuple[ChannelSpec, ...] = self.declare_channels()

    @abc.abstractmethod
    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        """The channels this device provides, from its config."""

    async def open(self) -> None:
        """Open the transport. Raises DriverError."""

    @abc.abstractmethod
    async def read(self, t_s: float) -> list[Reading]:
        """Read every channel now; ``t_s`` is the loop-clock time to stamp. Raises DriverError only."""

    async def close(self) -> None:
        """Release the transport; never raises."""

    async def __aenter__(self) -> Driver:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def spec(self, key: str, quantity: str, unit: str, valid_min: float, valid_max: float) -> ChannelSpec:
        """A channel named ``<device name>_<key>`` (or the device name when ``key`` is empty)."""
        name = f"{self.cfg.name}_{key}" if key else self.cfg.name
        return ChannelSpec(name, quantity, unit, valid_min, valid_max, self.period_s)

    def faults(self, t_s: float, reason: str) -> list[Reading]:
        """A FAULT reading with ``reason`` for every channel."""
        return [fault(spec, t_s, reason) for spec in self.channels]


class FreezeWatch:
    """Frozen-value detection that only suspects a channel whose own noise says it should move.

    A live sensor whose noise exceeds its resolution changes on most reads; when such a channel then shows
    the same raw value for ``stuck_after_s``, the chip or its driver has hung. A channel that rarely or
    never changed (a quantity steadier than the sensor's resolution, or a simulator's constant value such as
    hw-sim's 40.0 %RH) is never called stale for being constant. ``NOISY_FRACTION`` of reads changing (an
    exponential average over about ``1 / ALPHA`` reads, taken when the value last changed) makes a channel
    noisy.
    """

    ALPHA = 0.1
    NOISY_FRACTION = 0.5

    def __init__(self) -> None:
        self._last: dict[str, object] = {}
        self._changed_at_s: dict[str, float] = {}
        self._change_rate: dict[str, float] = {}
        self._noisy_at_change: dict[str, bool] = {}

    def frozen_for(self, channel: str, raw: object, t_s: float, stuck_after_s: float) -> float | None:
        """Record ``raw`` read at ``t_s``; how long (s) a noisy channel has shown it, when at least
        ``stuck_after_s`` (> 0), else None."""
        first = channel not in self._last
        changed = not first and raw != self._last[channel]
        rate = self._change_rate.get(channel, 0.0)
        if not first:
            rate += self.ALPHA * ((1.0 if changed else 0.0) - rate)
            self._change_rate[channel] = rate
        if first or changed:
            self._last[channel], self._changed_at_s[channel] = raw, t_s
            self._noisy_at_change[channel] = rate >= self.NOISY_FRACTION
        frozen_s = t_s - self._changed_at_s[channel]
        if stuck_after_s > 0 and self._noisy_at_change[channel] and frozen_s >= stuck_after_s:
            return frozen_s
        return None
