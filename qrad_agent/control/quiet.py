"""Quiet hours: a cap on the heater's power during a configured night window, so its fans stay quiet.

A computing heater's fans speed up with its power; at night, in a bedroom, the occupant hears them. Within the
window (local wall-clock time, may cross midnight) the heat demand is capped at ``cap_w``; when a presence
channel is configured the cap applies only while someone is present (an empty room may be heated at full
power at night). Pure logic: the thermostat passes the local time and whether presence was detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta


def parse_hhmm(text: str) -> time:
    """"HH:MM" -> time; raises ValueError otherwise."""
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` to ``end`` (local time of day; ``end`` <= ``start`` crosses midnight) cap power at
    ``cap_w`` (W). ``needs_presence``: only while someone is in the room."""

    start: time
    end: time
    cap_w: float
    needs_presence: bool = False

    def within(self, now: datetime) -> bool:
        """Whether ``now`` (local time) is inside the window."""
        t = now.time().replace(tzinfo=None)
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def cap(self, now: datetime, present: bool | None) -> tuple[float | None, str]:
        """(cap in W or None, reason). ``present``: None when no presence channel is read."""
        window = f"{self.start:%H:%M}-{self.end:%H:%M}"
        if not self.within(now):
            return None, f"outside quiet hours {window}"
        if self.needs_presence and not present:
            return None, f"quiet hours {window}, nobody present"
        who = " and someone present" if self.needs_presence else ""
        return self.cap_w, f"quiet hours {window}{who}: fan noise cap {self.cap_w:g} W"

    def cap_at(self, now: datetime) -> float | None:
        """The cap (W) a plan for ``now`` must assume (presence unknown ahead: assumed present)."""
        return self.cap_w if self.within(now) else None


def minutes(t: time) -> timedelta:
    """A time of day as the timedelta since midnight."""
    return timedelta(hours=t.hour, minutes=t.minute)
