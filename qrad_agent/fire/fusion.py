"""Fusion of the detectors' evidence into NORMAL -> PRE_ALARM -> ALARM, plus FAULT; ALARM latches.

Rule (a weighted score with persistence, chosen over a Bayesian product because its numbers can be read
off a status page and checked against the benchmark):

    score = sum over detectors of weight * confidence          (weights from FusionConfig)
    ALARM      score >= alarm_score held for alarm_persist_s    latched until reset(authorised=True)
               (held since the evidence's ``since_s`` when one detector alone reaches alarm_score and
               says since when its evidence holds: T3 confirmed over two cycles has sounded ~5 s already)
    PRE_ALARM  score >= pre_alarm_score held for pre_alarm_persist_s; it ends only after the score has
               stayed below pre_alarm_score for pre_alarm_clear_s (an off-delay: one event, one PRE_ALARM)
    FAULT      otherwise, while an input the configuration needs is missing (its detector says why)
    NORMAL     otherwise

A confidence of 1 means "definite on its own" (EN 54-5 heat response, a T3 alarm heard for two cycles);
weights below 1 mean "needs corroboration". Every decision carries the evidence it was made from (each
detector's values, reason and time), the score, and since when the state holds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from qrad_agent.fire.config import FusionConfig
from qrad_agent.fire.evidence import Evidence


class FireState(enum.Enum):
    NORMAL = "normal"
    PRE_ALARM = "pre_alarm"
    ALARM = "alarm"
    FAULT = "fault"


@dataclass(frozen=True)
class Decision:
    """One fusion step: the state, why, and from what."""

    state: FireState
    t_s: float
    score: float
    since_s: float
    reason: str
    evidence: tuple[Evidence, ...] = ()
    missing: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (for status, the alarm event and the log)."""
        return {"state": self.state.value, "t_s": round(self.t_s, 3), "score": round(self.score, 3),
                "since_s": round(self.since_s, 3), "reason": self.reason, "missing": list(self.missing),
                "evidence": [e.as_dict() for e in self.evidence if e.confidence > 0 or not e.available]}


class FireFusion:
    """``update(t_s, evidence, needed)`` per evaluation; ``reset(authorised)`` ends a latched ALARM."""

    def __init__(self, cfg: FusionConfig) -> None:
        self.cfg = cfg
        self.state = FireState.NORMAL
        self.since_s = 0.0
        self._above_alarm_s: float | None = None
        self._above_pre_s: float | None = None
        self._below_pre_s: float | None = None
        self.alarm: Decision | None = None
        self.last: Decision | None = None

    def score(self, evidence: list[Evidence]) -> float:
        return sum(self.cfg.weights.get(e.detector, 0.0) * e.confidence for e in evidence)

    def update(self, t_s: float, evidence: list[Evidence], needed: tuple[str, ...] = ()) -> Decision:
        score = self.score(evidence)
        self._above_alarm_s = _held(self._above_alarm_s, score >= self.cfg.alarm_score, t_s)
        if self._above_alarm_s is not None:  # definite on its own and held since: persistence already shown
            own = [e.since_s for e in evidence if e.since_s is not None
                   and self.cfg.weights.get(e.detector, 0.0) * e.confidence >= self.cfg.alarm_score]
            self._above_alarm_s = min([self._above_alarm_s, *own])
        self._above_pre_s = _held(self._above_pre_s, score >= self.cfg.pre_alarm_score, t_s)
        self._below_pre_s = _held(self._below_pre_s, score < self.cfg.pre_alarm_score, t_s)
        missing = tuple(e.detector for e in evidence if not e.available and e.detector in needed)
        state, reason = self._next(t_s, score, evidence, missing)
        if state is not self.state:
            self.state, self.since_s = state, t_s
        decision = Decision(state, t_s, score, self.since_s, reason, tuple(evidence), missing)
        if state is FireState.ALARM and self.alarm is None:
            self.alarm = decision
        self.last = decision
        return decision

    def _next(self, t_s: float, score: float, evidence: list[Evidence],
              missing: tuple[str, ...]) -> tuple[FireState, str]:
        if self.state is FireState.ALARM:
            assert self.alarm is not None
            return FireState.ALARM, f"latched since {self.alarm.t_s:.1f} s: {self.alarm.reason}"
        top = sorted((e for e in evidence if e.confidence > 0),
                     key=lambda e: -self.cfg.weights.get(e.detector, 0.0) * e.confidence)
        why = "; ".join(f"{e.detector} {e.confidence:.2f}: {e.reason}" for e in top) or "no evidence"
        if self._above_alarm_s is not None and t_s - self._above_alarm_s >= self.cfg.alarm_persist_s:
            return FireState.ALARM, f"score {score:.2f} >= {self.cfg.alarm_score} since " \
                                    f"{self._above_alarm_s:.1f} s: {why}"
        if self._above_pre_s is not None and t_s - self._above_pre_s >= self.cfg.pre_alarm_persist_s:
            return FireState.PRE_ALARM, f"score {score:.2f} >= {self.cfg.pre_alarm_score}: {why}"
        if self.state is FireState.PRE_ALARM and self._below_pre_s is None:  # above again: the same event
            return FireState.PRE_ALARM, f"score {score:.2f} >= {self.cfg.pre_alarm_score}: {why}"
        if (self.state is FireState.PRE_ALARM and self._below_pre_s is not None
                and t_s - self._below_pre_s < self.cfg.pre_alarm_clear_s):
            return FireState.PRE_ALARM, (f"score {score:.2f} below {self.cfg.pre_alarm_score} since "
                                         f"{self._below_pre_s:.1f} s, clears after "
                                         f"{self.cfg.pre_alarm_clear_s:.0f} s: {why}")
        if missing:
            reasons = "; ".join(e.reason for e in evidence if e.detector in missing)
            return FireState.FAULT, f"inputs missing: {', '.join(missing)} ({reasons})"
        return FireState.NORMAL, why

    def reset(self, authorised: bool, who: str = "") -> bool:
        """End a latched ALARM; only an authorised command or a technician may. Returns True if reset."""
        if not authorised:
            return False
        self.state, self.alarm = FireState.NORMAL, None
        self._above_alarm_s = self._above_pre_s = self._below_pre_s = None
        return True


def _held(since: float | None, condition: bool, t_s: float) -> float | None:
    if not condition:
        return None
    return t_s if since is None else since
