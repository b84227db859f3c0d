"""Conventional on/off room thermostat with a switching differential, as a fallback to the PID.

Switches on when the temperature falls below ``setpoint - differential/2`` and off when it rises above
``setpoint + differential/2``; in between it keeps its last state (the memory that prevents chattering).
The differential is the "switching differential" of room thermostat datasheets (commonly 0.2-1 K).
Pure and time-free: the caller decides how often to call and for how long a state must be held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class HysteresisParams:
    """differential_k: total switching differential (K), > 0; on_w / off_w: power in each state (W)."""

    on_w: float
    differential_k: float = 0.5
    off_w: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.differential_k) and self.differential_k > 0):
            raise ValueError(f"differential_k must be finite and > 0, got {self.differential_k!r}")
        if not math.isfinite(self.on_w):
            raise ValueError(f"on_w must be finite, got {self.on_w!r}")
        if not math.isfinite(self.off_w):
            raise ValueError(f"off_w must be finite, got {self.off_w!r}")
        if not self.on_w > self.off_w:
            raise ValueError(f"on_w ({self.on_w}) must be > off_w ({self.off_w})")


class HysteresisThermostat:
    """On/off thermostat; ``update`` returns on_w or off_w (W). Starts off unless ``initially_on``."""

    def __init__(
        self, *, on_w: float, differential_k: float = 0.5, off_w: float = 0.0, initially_on: bool = False
    ) -> None:
        self.params = HysteresisParams(on_w=on_w, differential_k=differential_k, off_w=off_w)
        self._on = initially_on

    @property
    def is_on(self) -> bool:
        """True while the heater is in its on state."""
        return self._on

    @property
    def output_w(self) -> float:
        """Power for the current state (W)."""
        return self.params.on_w if self._on else self.params.off_w

    def update(self, setpoint_c: float, pv_c: float) -> float:
        """Switch on below setpoint_c - differential/2, off above setpoint_c + differential/2 (°C); else
        keep the state. Returns the power (W). Raises ValueError on a non-finite input.
        """
        if not (math.isfinite(setpoint_c) and math.isfinite(pv_c)):
            raise ValueError(f"setpoint_c and pv_c must be finite, got {setpoint_c!r}, {pv_c!r}")
        half_k = self.params.differential_k / 2
        if pv_c < setpoint_c - half_k:
            self._on = True
        elif pv_c > setpoint_c + half_k:
            self._on = False
        return self.output_w

    def reset(self, on: bool = False) -> None:
        """Force the state (e.g. off after a safety shutdown)."""
        self._on = on
