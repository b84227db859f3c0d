"""The one place where simulation time, wall-clock dates and weather time meet.

Simulation time ``t_s`` counts seconds since the start of the run. A run starts at a calendar date
(``start``, a naive datetime); ``wall_time(t_s)`` is that date plus t_s, and ``t_year_s(t_s)`` the
seconds since 1 January 00:00 of the typical (365-day) weather year, so that a run started on
"01-15" reads mid-January weather whatever the year. In a leap year, 29 February reads 28 February's
weather again and the rest of the year is shifted back by one day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_YEAR = 2026


def parse_start(text: str, default_year: int = DEFAULT_YEAR) -> datetime:
    """Parse "MM-DD" (in ``default_year``) or "YYYY-MM-DD" into midnight of that day.

    Raises ValueError for anything else."""
    parts = text.strip().split("-")
    try:
        if len(parts) == 2:
            return datetime(default_year, int(parts[0]), int(parts[1]))
        if len(parts) == 3:
            return datetime(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError as exc:
        raise ValueError(f"bad start date {text!r}: {exc}") from exc
    raise ValueError(f"bad start date {text!r}: expected MM-DD or YYYY-MM-DD")


def typical_year_s(moment: datetime) -> float:
    """Seconds since 1 January 00:00 of the typical 365-day year for ``moment``."""
    elapsed_s = (moment - datetime(moment.year, 1, 1, tzinfo=moment.tzinfo)).total_seconds()
    leap = moment.year % 4 == 0 and (moment.year % 100 != 0 or moment.year % 400 == 0)
    if leap and elapsed_s >= 59 * 86400.0:  # from 29 February on
        elapsed_s -= 86400.0
    return elapsed_s


@dataclass(frozen=True)
class SimClock:
    """Maps simulation seconds to dates and to weather-year seconds."""

    start: datetime

    def wall_time(self, t_s: float) -> datetime:
        """Calendar time at simulation second ``t_s``."""
        return self.start + timedelta(seconds=t_s)

    def t_year_s(self, t_s: float) -> float:
        """Weather-year second at simulation second ``t_s`` (Weather wraps it around the year)."""
        return typical_year_s(self.start) + t_s
