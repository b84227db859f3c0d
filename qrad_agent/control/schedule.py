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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from qrad_agent.schedule_grammar import DAY_NAMES, check_rule

WEEK = timedelta(days=7)


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


def _parse_rule(index: int, raw: Mapping[str, Any]) -> ScheduleRule:
    days, start, mode = check_rule(index, raw)
    return ScheduleRule(days, start, Mode(mode))


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
