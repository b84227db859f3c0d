"""What telemetry leaves the home: per channel, ``send`` / ``aggregate`` / ``local``.

A home's occupancy pattern is personal data (GDPR art. 4(1); ETSI EN 303 645 provision 5.8), so the
channels that reveal it are aggregated by default before they go to the platform:

- presence (the channels of ``fire.occupancy_channels``): the hourly occupancy fraction, the share of
  good samples in the hour that read 1; channel ``{name}_occupancy_1h``, unit "1";
- sound level (quantity ``sound_level``): the hourly LAeq, 10·log10 of the mean of 10^(L/10) over the good
  samples (the equivalent continuous level, IEC 61672-1), channel ``{name}_laeq_1h``, unit "dB(A)";
- door and window contacts (other channels of quantity ``state``): the daily count of openings (0 -> 1),
  local calendar day, channel ``{name}_openings_1d``, unit "count".

``send`` forwards every telemetry period's latest reading as before (the default for all other channels);
``local`` sends nothing (the channel still serves the agent: thermostat, fire detection). An aggregate is
sent once, in the first telemetry batch after its hour or day has closed, stamped with the period's end;
an hour with no good sample gives a reading with value null and quality "missing". Aggregates are held in
memory: a restart loses the hour or day in progress (it is not sent half-filled).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

HOUR_S = 3600.0


class Policy(StrEnum):
    SEND = "send"
    AGGREGATE = "aggregate"
    LOCAL = "local"


class Personal(StrEnum):
    """Kinds of personal channel and how each is aggregated."""

    OCCUPANCY = "occupancy"
    SOUND = "sound"
    CONTACT = "contact"


SUFFIX = {Personal.OCCUPANCY: ("occupancy_1h", "1"), Personal.SOUND: ("laeq_1h", "dB(A)"),
          Personal.CONTACT: ("openings_1d", "count")}


def personal_kind(name: str, quantity: str, occupancy_channels: Iterable[str]) -> Personal | None:
    """Which kind of personal channel ``name`` is, or None for a channel that reveals no one's habits."""
    if quantity == "sound_level":
        return Personal.SOUND
    if quantity == "state":
        return Personal.OCCUPANCY if name in set(occupancy_channels) else Personal.CONTACT
    return None


@dataclass
class _Bucket:
    key: float  # hour start (unix s) or local day start (unix s)
    end: float
    good: int = 0
    active: int = 0
    energy: float = 0.0
    openings: int = 0


@dataclass(frozen=True)
class Aggregate:
    """One closed period's value: ``channel`` (derived name), ``t`` (period end, unix s), ``value``."""

    channel: str
    t: float
    value: float | None
    unit: str


@dataclass
class ChannelAggregator:
    """Accumulates one personal channel's samples and yields closed periods."""

    name: str
    kind: Personal
    day_start: Callable[[float], float]
    _bucket: _Bucket | None = None
    _last_value: float | None = None
    _last_t: float = -math.inf
    closed: list[Aggregate] = field(default_factory=list)

    def _period(self, t: float) -> tuple[float, float]:
        if self.kind is Personal.CONTACT:
            start = self.day_start(t)
            return start, self.day_start(start + 36 * HOUR_S)  # the next local midnight (DST-safe)
        start = math.floor(t / HOUR_S) * HOUR_S
        return start, start + HOUR_S

    def add(self, t: float, value: float | None, good: bool) -> None:
        """One sample at unix time ``t``; older or repeated samples are ignored."""
        if t <= self._last_t or not math.isfinite(t):
            return
        self._last_t = t
        start, end = self._period(t)
        if self._bucket is None or start != self._bucket.key:
            self._close()
            self._bucket = _Bucket(start, end)
        bucket = self._bucket
        if not good or value is None or not math.isfinite(value):
            return
        bucket.good += 1
        if self.kind is Personal.OCCUPANCY:
            bucket.active += value >= 0.5
        elif self.kind is Personal.SOUND:
            bucket.energy += 10.0 ** (value / 10.0)
        else:
            if value >= 0.5 and self._last_value is not None and self._last_value < 0.5:
                bucket.openings += 1
            self._last_value = value

    def flush(self, now: float) -> list[Aggregate]:
        """Close the current period if ``now`` is past its end; return and forget every closed one."""
        if self._bucket is not None and now >= self._bucket.end:
            self._close()
        out, self.closed = self.closed, []
        return out

    def _close(self) -> None:
        bucket, self._bucket = self._bucket, None
        if bucket is None:
            return
        suffix, unit = SUFFIX[self.kind]
        value: float | None
        if self.kind is Personal.CONTACT:
            value = float(bucket.openings) if bucket.good else None
        elif not bucket.good:
            value = None
        elif self.kind is Personal.OCCUPANCY:
            value = bucket.active / bucket.good
        else:
            value = 10.0 * math.log10(bucket.energy / bucket.good)
        self.closed.append(Aggregate(f"{self.name}_{suffix}", bucket.end, value, unit))


def local_day_start(t: float) -> float:
    """Unix time of the local midnight starting the day that holds ``t``."""
    tm = time.localtime(t)
    return time.mktime((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0, 0, 0, -1))
