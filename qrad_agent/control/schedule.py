"""Weekly setpoint schedule, as programmable room thermostats have: comfort, eco and frost-protection modes.

A rule says "from this weekday and time of day on, use this mode"; it holds until the next rule's start, in
week order, wrapping across midnight and from Sunday to Monday (a Sunday 22:00 rule covers Monday 00:00-06:00
if the next rule starts Monday 06:00). The schedule works on the wall-clock fields of the datetime it is given
(weekday, hour, minute, ...): the caller passes local time; with aware datetimes, ``next_change`` adds a
wall-clock timedelta, so across a DST change its result is the scheduled wall-clock time.
"""

from __future__ import annotations

import bisect
import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WEEK = timedelta(days=7)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_ALIASES = {"daily": range(7), "weekdays": range(5), "weekend": (5, 6), "weekends": (5, 6)}
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


class Mode(enum.Enum):
    """Thermostat modes; frost protection keeps the room above freezing when nobody is there."""

    COMFORT = "comfort"
    ECO = "eco"
    FROST = "frost"


@dataclass(frozen=True)
class ModeSetpoints:
    """Setpoint of each mode (°C); comfort_c >= eco_c >= frost_c. Defaults: 20 / 17 / 7 °C."""

    comfort_c: float = 20.0
    eco_c: float = 17.0
    frost_c: float = 7.0

    def __post_init__(self) -> None:
        for name in ("comfort_c", "eco_c", "frost_c"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if not self.comfort_c >= self.eco_c >= self.frost_c:
            raise ValueError(
                f"need comfort_c >= eco_c >= frost_c, got {self.comfort_c}, {self.eco_c}, {self.frost_c}"
            )

    def for_mode(self, mode: Mode) -> float:
        """The setpoint (°C) of a mode."""
        return {Mode.COMFORT: self.comfort_c, Mode.ECO: self.eco_c, Mode.FROST: self.frost_c}[mode]


@dataclass(frozen=True)
class ScheduleRule:
    """From ``start`` (local time of day) on each of ``days`` (0 = Monday .. 6 = Sunday), use ``mode``."""

    days: frozenset[int]
    start: time
    mode: Mode

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days or not all(isinstance(d, int) and 0 <= d <= 6 for d in self.days):
            raise ValueError(f"days must be a non-empty set of weekdays 0..6, got {sorted(self.days)!r}")
        if not isinstance(self.start, time) or self.start.tzinfo is not None:
            raise ValueError(f"start must be a naive datetime.time, got {self.start!r}")
        if not isinstance(self.mode, Mode):
            raise ValueError(f"mode must be a Mode, got {self.mode!r}")


def _week_offset(day: int, at: time) -> timedelta:
    return timedelta(days=day, hours=at.hour, minutes=at.minute, seconds=at.second, microseconds=at.microsecond)


class WeeklySchedule:
    """Mode and setpoint as a function of local time; ``default_mode`` applies only when there is no rule.

    Two rules starting at the same weekday and time with different modes are a ValueError.
    """

    def __init__(
        self,
        rules: Iterable[ScheduleRule],
        setpoints: ModeSetpoints | None = None,
        default_mode: Mode = Mode.ECO,
    ) -> None:
        self.rules = tuple(rules)
        self.setpoints = setpoints if setpoints is not None else ModeSetpoints()
        self.default_mode = default_mode
        events: dict[timedelta, Mode] = {}
        for rule in self.rules:
            for day in rule.days:
                offset = _week_offset(day, rule.start)
                if events.setdefault(offset, rule.mode) is not rule.mode:
                    raise ValueError(f"conflicting rules at {DAY_NAMES[day]} {rule.start}")
        self._offsets = sorted(events)
        self._modes = [events[offset] for offset in self._offsets]

    def mode_at(self, dt: datetime) -> Mode:
        """The mode in force at ``dt`` (its wall-clock weekday and time); a rule starts at its start time."""
        if not self._offsets:
            return self.default_mode
        index = bisect.bisect_right(self._offsets, _week_offset(dt.weekday(), dt.time())) - 1
        return self._modes[index]  # index -1 wraps to last week's final rule

    def setpoint_at(self, dt: datetime) -> float:
        """The setpoint (°C) in force at ``dt``."""
        return self.setpoints.for_mode(self.mode_at(dt))

    def next_change(self, dt: datetime) -> datetime | None:
        """The first instant after ``dt`` at which the setpoint changes (a rule whose setpoint differs from
        the current one), within the next 7 days; None if the setpoint never changes.
        """
        now = _week_offset(dt.weekday(), dt.time())
        current_c = self.setpoint_at(dt)
        first = bisect.bisect_right(self._offsets, now)
        for k in range(len(self._offsets)):
            index = (first + k) % len(self._offsets)
            ahead = self._offsets[index] - now
            if ahead <= timedelta(0):
                ahead += WEEK
            if ahead >= WEEK:
                break
            if self.setpoints.for_mode(self._modes[index]) != current_c:
                return dt + ahead
        return None

    @classmethod
    def constant(cls, setpoint_c: float) -> WeeklySchedule:
        """A schedule that always asks for ``setpoint_c`` (°C); frost_c is min(7, setpoint_c)."""
        setpoints = ModeSetpoints(comfort_c=setpoint_c, eco_c=setpoint_c, frost_c=min(7.0, setpoint_c))
        return cls((), setpoints, default_mode=Mode.COMFORT)

    @classmethod
    def parse(
        cls,
        rules: Iterable[Mapping[str, Any]],
        setpoints: ModeSetpoints | None = None,
        default_mode: Mode = Mode.ECO,
    ) -> WeeklySchedule:
        """Build from plain dicts such as ``{"days": "mon-fri", "start": "06:30", "mode": "comfort"}``.

        days: comma-separated day names or ranges ("mon-fri", "sat,sun", "fri-mon" wraps), or "daily",
        "weekdays", "weekend"; start: "HH:MM" or "HH:MM:SS"; mode: comfort, eco or frost.
        Raises ValueError naming the rule index, the field and the bad value (also for unknown fields).
        """
        return cls([_parse_rule(index, raw) for index, raw in enumerate(rules)], setpoints, default_mode)


def _bad(index: int, name: str, value: object, why: str) -> ValueError:
    return ValueError(f"schedule rule {index}: field '{name}' has bad value {value!r}: {why}")


def _parse_days(index: int, value: object) -> frozenset[int]:
    if not isinstance(value, str) or not value.strip():
        raise _bad(index, "days", value, "expected a string like 'mon-fri', 'sat,sun' or 'daily'")
    days: set[int] = set()
    for token in (part.strip().lower() for part in value.split(",")):
        if token in DAY_ALIASES:
            days.update(DAY_ALIASES[token])
            continue
        ends = [end.strip() for end in token.split("-")]
        if len(ends) > 2 or not all(end in DAY_NAMES for end in ends):
            raise _bad(index, "days", value, f"unknown day or range {token!r}; days are {', '.join(DAY_NAMES)}")
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        days.update((first + k) % 7 for k in range((last - first) % 7 + 1))
    return frozenset(days)


def _parse_start(index: int, value: object) -> time:
    match = _TIME_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _bad(index, "start", value, "expected 'HH:MM' or 'HH:MM:SS'")
    try:
        return time(int(match[1]), int(match[2]), int(match[3] or 0))
    except ValueError as exc:
        raise _bad(index, "start", value, str(exc)) from exc


def _parse_rule(index: int, raw: Mapping[str, Any]) -> ScheduleRule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"schedule rule {index}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"days", "start", "mode"})
    if unknown:
        raise _bad(index, unknown[0], raw[unknown[0]], "unknown field; fields are days, start, mode")
    for name in ("days", "start", "mode"):
        if name not in raw:
            raise ValueError(f"schedule rule {index}: field '{name}' is missing")
    mode_value = raw["mode"]
    modes = {mode.value: mode for mode in Mode}
    if not isinstance(mode_value, str) or mode_value.strip().lower() not in modes:
        raise _bad(index, "mode", mode_value, f"expected one of {', '.join(modes)}")
    mode = modes[mode_value.strip().lower()]
    return ScheduleRule(_parse_days(index, raw["days"]), _parse_start(index, raw["start"]), mode)


def default_home(setpoints: ModeSetpoints | None = None) -> WeeklySchedule:
    """Weekdays comfort 06:30-08:30 and 17:00-22:30, weekends comfort 08:00-23:00, eco otherwise."""
    return WeeklySchedule.parse(
        [
            {"days": "mon-fri", "start": "06:30", "mode": "comfort"},
            {"days": "mon-fri", "start": "08:30", "mode": "eco"},
            {"days": "mon-fri", "start": "17:00", "mode": "comfort"},
            {"days": "mon-fri", "start": "22:30", "mode": "eco"},
            {"days": "sat,sun", "start": "08:00", "mode": "comfort"},
            {"days": "sat,sun", "start": "23:00", "mode": "eco"},
        ],
        setpoints,
    )


class ScheduleRuleSpec(BaseModel):
    """One schedule rule as written in the config file ([[thermostat.schedule]]), a platform `set_schedule`
    command and the local API alike: the one grammar of `WeeklySchedule.parse` (days "mon-fri", "sat,sun",
    "fri-mon", "daily", "weekdays", "weekend"; start "HH:MM" or "HH:MM:SS"; mode comfort, eco or frost)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: str = Field(max_length=64)
    start: str = Field(max_length=8)
    mode: Literal["comfort", "eco", "frost"]

    @model_validator(mode="after")
    def _grammar(self) -> ScheduleRuleSpec:
        _parse_rule(0, self.model_dump())  # raises ValueError naming the field and the bad value
        return self
