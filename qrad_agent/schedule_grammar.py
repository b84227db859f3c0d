"""The one schedule grammar: a weekly rule as written in the config file ([[thermostat.schedule]]), a
platform `set_schedule` command and the local API (`qrad-agent schedule`) alike.

days: comma-separated day names or ranges ("mon-fri", "sat,sun", "fri-mon" wraps), or "daily", "weekdays",
"weekend"; start: "HH:MM" or "HH:MM:SS" (local wall-clock time); mode: comfort, eco or frost. Every error is
a ValueError naming the rule's index, the field and the bad value. `qrad_agent.control.schedule` builds the
WeeklySchedule from rules that pass here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_ALIASES = {"daily": range(7), "weekdays": range(5), "weekend": (5, 6), "weekends": (5, 6)}
MODE_NAMES = ("comfort", "eco", "frost")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _bad(index: int, name: str, value: object, why: str) -> ValueError:
    return ValueError(f"schedule rule {index}: field '{name}' has bad value {value!r}: {why}")


def parse_days(index: int, value: object) -> frozenset[int]:
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


def parse_start(index: int, value: object) -> time:
    match = _TIME_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _bad(index, "start", value, "expected 'HH:MM' or 'HH:MM:SS'")
    try:
        return time(int(match[1]), int(match[2]), int(match[3] or 0))
    except ValueError as exc:
        raise _bad(index, "start", value, str(exc)) from exc


def check_rule(index: int, raw: Mapping[str, Any]) -> tuple[frozenset[int], time, str]:
    """Rule ``index`` as (weekdays 0 = Monday .. 6, start time, mode name). Raises ValueError."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"schedule rule {index}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"days", "start", "mode"})
    if unknown:
        raise _bad(index, unknown[0], raw[unknown[0]], "unknown field; fields are days, start, mode")
    for name in ("days", "start", "mode"):
        if name not in raw:
            raise ValueError(f"schedule rule {index}: field '{name}' is missing")
    mode = raw["mode"]
    if not isinstance(mode, str) or mode.strip().lower() not in MODE_NAMES:
        raise _bad(index, "mode", mode, f"expected one of {', '.join(MODE_NAMES)}")
    return parse_days(index, raw["days"]), parse_start(index, raw["start"]), mode.strip().lower()


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
        check_rule(0, self.model_dump())  # raises ValueError naming the field and the bad value
        return self
