"""Plausibility checks the hub applies on top of each driver's own range check.

- Rate of change (`guard_rate`): a sample further from the last accepted one than the quantity's believable
  rate allows is a spike, flagged FAULT (the value is kept in the reading for diagnostics, never used as
  OK). A flagged sample never becomes the reference, and a level reached that way stays FAULT until a
  redundant sensor confirms it, the reading walks back, or a physically possible path reaches it.
- Redundancy: room temperatures measured by independent sensors (SHT4x, DS18B20, BME280) should agree.
  With three or more fresh ones, any further than the tolerance from their median is voted out; with two,
  a disagreement is reported (nobody can tell which one is right) and the preferred one is kept.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from qrad_drivers.base import Quality, Reading


def vote(readings: list[Reading], tolerance: float) -> tuple[list[Reading], list[str]]:
    """Split fresh, OK redundant readings into those kept and the reasons of those voted out.

    With fewer than three readings nothing is voted out; a pair further apart than ``tolerance`` yields a
    "disagree" note and both are kept.
    """
    if len(readings) < 2:
        return readings, []
    if len(readings) == 2:
        a, b = readings
        if abs(a.value - b.value) > tolerance:
            return readings, [(f"{a.channel} {a.value:.2f} and {b.channel} {b.value:.2f} disagree by "
                              f"{abs(a.value - b.value):.2f} > {tolerance:g}")]
        return readings, []
    median = statistics.median(r.value for r in readings)
    kept = [r for r in readings if abs(r.value - median) <= tolerance]
    notes = [f"{r.channel} {r.value:.2f} is {r.value - median:+.2f} from the median {median:.2f} of "
             f"{len(readings)} redundant sensors" for r in readings if r not in kept]
    return kept, notes


@dataclass
class RateGuard:
    """One channel's rate-check state: ``reference`` is the last accepted reading, the only thing a new
    sample is compared with; ``held`` is the first sample of a level reached faster than the rate allows,
    while it is unconfirmed; ``last`` is the last sample checked (accepted or held), for the path rules."""

    reference: Reading | None = None
    held: Reading | None = None
    last: Reading | None = None
    path_rate_per_s: float = 0.0  # rate of a path beyond the plain rate that confirmed a hold, while it lasts


def guard_rate(guard: RateGuard, current: Reading, max_rate_per_s: float | None, floor: float = 0.0,
               confirmed_by: str | None = None) -> Reading:
    """``current`` as accepted (its own quality) or held (FAULT), updating ``guard``.

    A flagged sample never becomes the reference. A sample further than ``max_rate_per_s * dt + floor``
    from the reference (dt since the reference) starts a hold; while held, each sample stays FAULT until:
    - ``confirmed_by`` names a redundant sensor that reads the same level (the caller decides that), or
    - it walks back: within ``max_rate_per_s * dt + floor`` of the reference, dt since the previous sample
      (the level was never real; the reading is back where the room is), or
    - a physically possible path reaches it: the samples since the jump keep moving away from the reference,
      at a rate that alone explains the jump into the hold (|jump| <= rate x its interval + floor). A fire
      heats a sensor that way, sample after sample (UL FSRI armchair fire, 1.2 m below the ceiling: 1.7,
      2.8, 3.8 then 5.3 K/s over 10 s steps); a sensor that steps and stays, or steps and then drifts, does
      not.
    Waiting longer is never enough: the allowance while held grows with the time between samples, not with
    the time since the reference. Readings that are not OK, or channels without a rate, pass unchanged (a
    driver fault keeps the reference and the hold). Units: the channel's, and seconds.
    """
    if max_rate_per_s is None or not current.ok:
        return current
    reference = guard.reference
    if reference is None or reference.value != reference.value:  # nothing accepted yet (or NaN): start here
        return _accept(guard, current)
    previous = guard.last if guard.last is not None else reference
    if current.t_s <= previous.t_s:
        return replace(current, quality=Quality.FAULT,
                       reason=f"out of order: taken at {current.t_s:.1f} s, not after {previous.t_s:.1f} s")
    unit = current.unit
    if guard.held is None:
        dt_s = current.t_s - reference.t_s
        allowed = max_rate_per_s * dt_s + floor
        projected = reference.value + guard.path_rate_per_s * dt_s  # a confirmed path goes on, until it stops
        if abs(current.value - projected) <= allowed or confirmed_by is not None:
            rate_per_s = (current.value - reference.value) / dt_s
            on_path = guard.path_rate_per_s != 0.0 and abs(rate_per_s) > max_rate_per_s and \
                rate_per_s * guard.path_rate_per_s > 0
            return _accept(guard, current, rate_per_s if on_path else 0.0)
        guard.held, guard.last = current, current
        return replace(current, quality=Quality.FAULT, reason=(
            f"spike: {reference.value:g} -> {current.value:g} {unit} in {dt_s:.1f} s (more than {allowed:.3g} "
            f"allowed at {max_rate_per_s:g}/s); held until a redundant sensor or a plausible path confirms it"))
    if confirmed_by is not None:
        return _accept(guard, current)
    step_allowed = max_rate_per_s * (current.t_s - previous.t_s) + floor
    if abs(current.value - reference.value) <= step_allowed:  # walked back to where the room was
        return _accept(guard, current)
    if _path_reaches(reference, guard.held, current, floor):
        return _accept(guard, current, (current.value - guard.held.value) / (current.t_s - guard.held.t_s))
    guard.last = current
    return replace(current, quality=Quality.FAULT, reason=(
        f"held: {current.value:g} {unit} reached from {reference.value:g} {unit} faster than "
        f"{max_rate_per_s:g}/s at {guard.held.t_s:.1f} s, and neither a redundant sensor nor a plausible "
        f"path confirms it"))


def _accept(guard: RateGuard, current: Reading, path_rate_per_s: float = 0.0) -> Reading:
    guard.reference, guard.held, guard.last = current, None, current
    guard.path_rate_per_s = path_rate_per_s
    return current


def _path_reaches(reference: Reading, held: Reading, current: Reading, floor: float) -> bool:
    """Whether the samples since the jump continue it at a rate that explains it (see `guard_rate`)."""
    jump = held.value - reference.value
    dt_s = current.t_s - held.t_s
    if dt_s <= 0:
        return False
    rate_per_s = (current.value - held.value) / dt_s
    if rate_per_s * jump <= 0:  # not moving on in the jump's direction
        return False
    return abs(jump) <= abs(rate_per_s) * (held.t_s - reference.t_s) + floor


def check_rate(previous: Reading | None, current: Reading, max_rate_per_s: float | None,
               floor: float = 0.0) -> Reading:
    """``current`` checked against one accepted ``previous`` reading (`guard_rate` with that reference): FAULT
    if it moved more than ``max_rate_per_s * dt + floor``. The hub keeps a `RateGuard` per channel instead."""
    guard = RateGuard(reference=previous, last=previous)
    return guard_rate(guard, current, max_rate_per_s, floor)
