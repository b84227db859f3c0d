"""The jobs as the heater's actuator: CPU share for fine control, freeze/thaw to stop heat at once,
checkpoint before a long stop.

`freeze_all` is the safety layer's path: synchronous, one cgroup write, no await, no lock, never raises.
A share near zero freezes the jobs (their work is kept); a share above what the running jobs can use lets
queued jobs start. Freezing and thawing go through a `FreezeGate` (freeze_gate.py): a share under the freeze
threshold freezes once the jobs have run a minimum time since the last thaw (until then it is their quota),
a thaw needs a higher share and a minimum time frozen, so a demand wandering around the threshold does not
freeze and thaw the jobs every period. The safety minimum (`apply_floor`, the power manager's
``force_minimum``) freezes at once, whatever the dwell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from qrad_agent.clock import Clock
from qrad_agent.errors import ActuatorError
from qrad_agent.jobs.freeze_gate import FREEZE_BELOW_SHARE, FreezeGate

if TYPE_CHECKING:  # the runner (bundles, signatures: cryptography) loads only where jobs are enabled
    from qrad_agent.jobs.runner import JobRunner

log = structlog.get_logger(component="jobs.heat")

__all__ = ["FREEZE_BELOW_SHARE", "JobsHeat"]


class JobsHeat:
    """Power actuator over the runner's jobs; ``share`` in [0, 1] of ``cfg.cpus`` CPUs."""

    name = "jobs"
    steps = 0

    def __init__(self, runner: JobRunner, now_s: Callable[[], float] | None = None,
                 gate: FreezeGate | None = None) -> None:
        """``now_s``: the loop clock (s) the gate's dwell is measured on (default: the running loop's)."""
        self.runner = runner
        self.share = 1.0
        self.forced_reason: str | None = None
        self.gate = gate or FreezeGate()
        self._now_s = now_s or Clock().monotonic

    def _now(self) -> float | None:
        try:
            return self._now_s()
        except RuntimeError:  # no running loop (a stop path after the loop ended): no dwell to honour
            return None

    def set_share(self, fraction: float, force: bool = False) -> None:
        """Jobs may use ``fraction`` of the CPUs (quota on the parent cgroup). Raises ActuatorError.
        ``force``: the safety minimum (`apply_floor`): freeze now, whatever the gate's dwell."""
        fraction = min(1.0, max(0.0, fraction))
        self.share = fraction
        self.forced_reason = None
        if self.gate.decide(fraction, self._now(), self.runner.frozen, force):
            self.freeze_all("share zero")
            return
        self.runner.tree.set_quota(fraction, self.runner.cfg.cpus)
        if self.runner.frozen:
            self.runner.thaw()
        # queued jobs start only while the share leaves room for more than the running ones use
        self.runner.hold = self.runner.used_slots() >= fraction * self.runner.cfg.cpus
        self.runner._wake.set()

    def freeze_all(self, reason: str = "safety") -> None:
        """Stop the jobs' CPU now, keeping their work. Synchronous; never raises (failures logged)."""
        self.forced_reason = reason
        self.runner.hold = True
        try:
            self.runner.freeze()
        except ActuatorError as exc:
            log.error("freeze failed; lowering the quota to its minimum", error=str(exc))
            try:
                self.runner.tree.set_quota(0.0, self.runner.cfg.cpus)
            except ActuatorError as exc2:
                log.error("minimum quota failed too", error=str(exc2))
        except Exception as exc:  # the safety path must not raise whatever happens
            log.exception("freeze crashed", error=repr(exc))

    def thaw_all(self) -> None:
        """Resume frozen jobs where they stopped."""
        self.forced_reason = None
        self.runner.thaw()
        self.runner.hold = False

    async def checkpoint_all(self, grace_s: float | None = None) -> None:
        """Before a long stop: SIGTERM, grace, SIGKILL; checkpointable jobs return to the queue."""
        self.runner.hold = True
        await self.runner.checkpoint_all(grace_s)

    # -- the PowerManager actuator contract (apply/release/readback), if wired as one --

    def apply(self, level: float) -> None:
        self.set_share(level)

    def apply_floor(self) -> None:
        """The lowest-power state now (the power manager's ``force_minimum``): frozen, whatever the dwell."""
        self.set_share(0.0, force=True)

    def release(self) -> None:
        """No CPU limit on the jobs: thaw them (unless a safety freeze holds) and let queued jobs start."""
        self.runner.tree.release_quota()
        if self.forced_reason in (None, "share zero"):
            self.forced_reason = None
            self.share = 1.0
            if self.runner.frozen:
                self.runner.thaw()
            self.runner.hold = False
            self.runner._wake.set()

    def readback(self) -> dict[str, str]:
        return {"share": f"{self.share:.3f}", "frozen": str(self.runner.frozen),
                "cpu_s": f"{self.runner.tree.cpu_s():.3f}"}

    def cpu_s(self) -> float:
        """CPU seconds used by all jobs so far (for measured heat: W = power model of CPU time)."""
        return self.runner.tree.cpu_s()
