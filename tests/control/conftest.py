"""Shared fixtures of the control tests."""

from __future__ import annotations

import pytest


class NaivePi:
    """PI without any anti-windup: the control the windup tests must be able to tell apart."""

    def __init__(self, kp: float, ti: float, lo: float, hi: float) -> None:
        self.kp, self.ti, self.lo, self.hi, self.integral_w = kp, ti, lo, hi, 0.0

    def update(self, sp: float, pv: float, dt: float) -> float:
        self.integral_w += self.kp / self.ti * (sp - pv) * dt
        return min(self.hi, max(self.lo, self.kp * (sp - pv) + self.integral_w))


@pytest.fixture
def naive_pi() -> type[NaivePi]:
    """The class of a wind-up-prone PI, to show a test would catch windup."""
    return NaivePi
