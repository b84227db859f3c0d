"""The power authority's safety state: conditions, latches, the control heartbeat and the stop latch.

`PowerManager` is the only object that writes a power interface, and before every write above the floor it
asks this object for a refusal. A demand is refused, whoever makes it (thermostat, autotune, a command),
while:

- a safety condition is active (`hold`): fire alarm, over-temperature, dead fans, a sensor fault ...;
- the control loop's heartbeat is older than ``heartbeat_timeout_s`` (a hung thermostat);
- the agent is stopping or stopped (`stop`): nothing raises power after stop, not even a task that was
  still running when the stop began.

Latched conditions (`LATCHED`) are written atomically to a small JSON file each time they change, and are
active again from the first instant of the next start: a restart does not forget a latch (the cycling a
latch exists to prevent). Nothing here logs before it acts, awaits, or raises: writing the latch file can
fail (full disk); the failure is counted and reported in `status`, and the latch still holds in memory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LATCHED = ("fire_alarm", "surface_overtemperature", "sensor_invalid", "no_response",
           "response_without_power", "cpu_overtemperature", "fan_failure", "power_not_following")
"""Conditions that stay until a technician or an authorised command resets them (and the cause is gone)."""

LATCH_FILE = "latches.json"


class SafetyState:
    """What decides whether power may rise above the floor. One per heater, shared by the safety layer
    (which holds and releases conditions) and the power manager (which refuses by it).

    ``monotonic`` is the event loop's clock (s); ``latch_path`` the latch file (None: not persisted).
    """

    def __init__(self, heartbeat_timeout_s: float, monotonic: Callable[[], float],
                 latch_path: Path | None = None) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._monotonic = monotonic
        self.latch_path = latch_path
        self.conditions: dict[str, str] = {}
        self.stopped: str | None = None
        self.ceiling_w: float | None = None  # a temporary demand ceiling (a fan proof), None: none
        self.latch_write_failures = 0
        self.last_latch_error: str | None = None
        self._heartbeat_s: float | None = None  # set at the first look: the loop gets a full timeout to start
        self.restored = self._load()

    # -- conditions -------------------------------------------------------------------------------------

    def hold(self, condition: str, reason: str) -> bool:
        """Make ``condition`` active with ``reason``; True only when it was not active (the caller logs once).
        A latched condition keeps the reason it latched with (what was seen first); another one takes the
        newest reason (a heartbeat's growing silence) without counting as new."""
        if condition in self.conditions:
            if condition not in LATCHED:
                self.conditions[condition] = reason
            return False
        self.conditions[condition] = reason
        if condition in LATCHED:
            self._save()
        return True

    def release(self, condition: str) -> bool:
        """End ``condition``; True when it was active."""
        if self.conditions.pop(condition, None) is None:
            return False
        if condition in LATCHED:
            self._save()
        return True

    def latched(self) -> dict[str, str]:
        """The active latched conditions and their reasons."""
        return {c: r for c, r in self.conditions.items() if c in LATCHED}

    # -- heartbeat and stop -----------------------------------------------------------------------------

    def heartbeat(self, t_s: float) -> None:
        """Proof that the control loop is alive at loop time ``t_s``."""
        self._heartbeat_s = t_s

    def heartbeat_age_s(self, now_s: float | None = None) -> float:
        """Seconds since the last heartbeat (loop clock)."""
        now_s = self._monotonic() if now_s is None else now_s
        if self._heartbeat_s is None:
            self._heartbeat_s = now_s
        return now_s - self._heartbeat_s

    def stop(self, reason: str) -> None:
        """Refuse every demand above the floor from now on, for the life of this object."""
        if self.stopped is None:
            self.stopped = reason

    def refusal(self, now_s: float | None = None) -> str | None:
        """Why power may not rise above the floor now, or None when it may."""
        if self.stopped is not None:
            return f"stopped: {self.stopped}"
        if self.conditions:
            return "; ".join(f"{c}: {r}" for c, r in self.conditions.items())
        age_s = self.heartbeat_age_s(now_s)
        if age_s > self.heartbeat_timeout_s:
            return f"control_heartbeat: control loop silent for {age_s:.0f} s"
        return None

    # -- persistence ------------------------------------------------------------------------------------

    def _save(self) -> None:
        if self.latch_path is None:
            return
        try:
            _write_atomic(self.latch_path, {"saved_at": time.time(), "latched": self.latched()})
        except OSError as exc:
            self.latch_write_failures += 1
            self.last_latch_error = f"{self.latch_path}: {exc.strerror or exc}"

    def _load(self) -> dict[str, str]:
        if self.latch_path is None:
            return {}
        try:
            data = json.loads(self.latch_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # An unreadable latch file could hide a latch: hold a condition until a technician looks.
            data = {"latched": {"latch_file_unreadable": f"{self.latch_path}: {exc}"}}
        latched = data.get("latched") if isinstance(data, dict) else None
        restored = {str(c): f"latched before restart: {r}" for c, r in (latched or {}).items()}
        self.conditions.update(restored)
        return restored

    def status(self) -> dict[str, Any]:
        """Plain-JSON view: conditions, latched ones, heartbeat age (s), stop reason, latch-file health."""
        return {"conditions": dict(self.conditions), "latched": sorted(self.latched()),
                "heartbeat_age_s": round(self.heartbeat_age_s(), 1), "stopped": self.stopped,
                "ceiling_w": self.ceiling_w,
                "latch_write_failures": self.latch_write_failures, "latch_error": self.last_latch_error}


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Temp file, fsync, rename, fsync of the directory; mode 0600. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
