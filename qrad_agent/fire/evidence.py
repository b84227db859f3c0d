"""What every fire detector hands the fusion: a named confidence in [0, 1], its values and a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Evidence:
    """One detector's evidence at ``t_s``: ``confidence`` 0 (nothing) to 1 (definite on its own)."""

    detector: str
    confidence: float
    values: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    t_s: float = 0.0
    available: bool = True
    since_s: float | None = None
    """When the detector's own evidence began, if it persists by construction (a T3 alarm confirmed over
    consecutive cycles has sounded since the first): the fusion counts its persistence from then."""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"detector": self.detector, "confidence": round(self.confidence, 3), "values": self.values,
                "reason": self.reason, "t_s": round(self.t_s, 3), "available": self.available}


def missing(detector: str, t_s: float, reason: str) -> Evidence:
    """Evidence from a detector whose input is missing: no confidence, and it says why."""
    return Evidence(detector, 0.0, {}, reason, t_s, available=False)


def clip01(x: float) -> float:
    return 0.0 if x <= 0.0 else (1.0 if x >= 1.0 else float(x))
