"""The power manager: heat demand (W) in, CPU power states out, through the kernel's own interfaces.

The demand is turned into one power level in [0, 1] through a learned `PowerCurve`, and the level into
states along a ladder: the jobs' cgroup CPU quota from ~0 to 100 % at the lowest P-state (the bottom
``quota_share`` of the range), then the first P-state/limit interface present (cpufreq, else RAPL) from its
lowest to its highest setting. Other interfaces are released so they do not limit. A write the kernel refuses
is logged once with its path, that interface is dropped and the next one takes over.

`force_minimum` is the safety layer's path: synchronous, never raising, no await, no lock; it writes first
and logs after. `set_demand` is the one way up, and it refuses (writes the floor instead) whenever the
`SafetyState` says so: a safety condition, a stale control heartbeat, or a stop. The refusal sits here, in
the actuator, not in each caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import structlog

from qrad_agent.config import PowerConfig
from qrad_agent.errors import ActuatorError
from qrad_agent.jobs.heat import JobsHeat
from qrad_agent.power.authority import SafetyState
from qrad_agent.power.cgroup import CgroupQuotaActuator, online_cpus
from qrad_agent.power.cpufreq import CpufreqActuator, discover_policies
from qrad_agent.power.curve import PowerCurve
from qrad_agent.power.rapl import RaplActuator, RaplEnergyMeter, discover_zones

log = structlog.get_logger(component="power")

IMPLAUSIBLE_POWER_FACTOR = 1.5
"""A measured power above this many times max_w is a counter glitch or a clock mismatch (a sped-up rig
whose energy counters run on model time): it is reported, never learned."""

Actuator = CpufreqActuator | RaplActuator | CgroupQuotaActuator | JobsHeat
QUOTA_TYPES = (CgroupQuotaActuator, JobsHeat)


def discover_actuators(cfg: PowerConfig, jobs: JobsHeat | None = None) -> list[Actuator]:
    """The interfaces of ``cfg.interfaces`` that this board has, in that order.

    With a job runner, its `JobsHeat` takes the "cgroup" place: quota, freeze and thaw of the jobs.
    """
    found: list[Actuator] = []
    for name in cfg.interfaces:
        try:
            if name == "cpufreq":
                found.append(CpufreqActuator(discover_policies(cfg.sysfs_root)))
            elif name == "rapl":
                found.append(RaplActuator(discover_zones(cfg.sysfs_root, cfg.rapl_package_min_w)))
            elif name == "cgroup" and jobs is not None:
                found.append(jobs)
            elif name == "cgroup" and cfg.jobs_cgroup is not None:
                found.append(CgroupQuotaActuator(cfg.jobs_cgroup, online_cpus(cfg.sysfs_root)))
        except ActuatorError as exc:
            log.info("interface absent", interface=name, detail=str(exc))
    return found


class PowerManager:
    """Turns a heat demand (W) into P-state caps, RAPL limits and the jobs' CPU quota."""

    def __init__(self, cfg: PowerConfig, actuators: list[Actuator] | None = None,
                 jobs: JobsHeat | None = None, safety_state: SafetyState | None = None) -> None:
        self.cfg = cfg
        # Without a shared state (a manager tried on its own) there is no heartbeat to watch; the agent passes one.
        self.safety_state = safety_state or SafetyState(math.inf, _no_clock)
        self.refused: str | None = None  # why the last demand was refused, None when it was applied
        self.actuators = discover_actuators(cfg, jobs) if actuators is None else actuators
        self.curve = PowerCurve(cfg.idle_w, cfg.max_w, learning_rate=cfg.learning_rate)
        self.meter: RaplEnergyMeter | None = None
        self.mains_w: Callable[[], float | None] | None = None  # the mains meter (W), where there is no RAPL
        rapl = next((a for a in self.actuators if isinstance(a, RaplActuator)), None)
        if rapl is not None:
            self.meter = RaplEnergyMeter(rapl.zones)
        self.level = 0.0
        self.demand_w = 0.0
        self.forced_reason: str | None = None
        self.measured_w: float | None = None
        self._level_since_s = float("inf")  # loop time the current level was applied
        self._last_measure_s: float | None = None  # the mains meter's last sample (RAPL keeps its own)
        self._implausible_logged = False
        self._released: set[str] = set()
        self._failed: dict[str, str] = {}
        log.info("interfaces", chain=self.chain_names(), measured_by="rapl" if self.meter else "mains meter or none")

    def chain_names(self) -> list[str]:
        """Names of the working interfaces, in use order."""
        return [a.name for a in self.actuators]

    def _quota(self) -> CgroupQuotaActuator | JobsHeat | None:
        return next((a for a in self.actuators if isinstance(a, QUOTA_TYPES)), None)

    def _pstate(self) -> CpufreqActuator | RaplActuator | None:
        return next((a for a in self.actuators if not isinstance(a, QUOTA_TYPES)), None)

    def set_demand(self, demand_w: float, t_s: float) -> float:
        """Apply a heat demand in W at loop time ``t_s``; returns the power (W) the curve expects from what
        was applied. While the safety state refuses, the floor is written instead, whoever asks."""
        refusal = self.safety_state.refusal(t_s)
        if refusal is not None:
            self.refused = refusal
            self.force_minimum(refusal)
            return self.curve.power_w(0.0)
        self.refused = None
        ceiling_w = self.safety_state.ceiling_w
        if ceiling_w is not None and demand_w > ceiling_w:
            demand_w = ceiling_w
        self.demand_w = demand_w
        self.forced_reason = None
        level = self.curve.level_for(demand_w)
        if level != self.level or self._level_since_s == float("inf"):
            self._level_since_s = t_s
        self.level = level
        self._apply(level)
        return self.curve.power_w(level)

    def _apply(self, level: float) -> None:
        while self.actuators:
            try:
                self._apply_chain(level)
                return
            except _Refused as refused:
                self._drop(refused.actuator, refused.error)

    def plan(self, level: float) -> dict[str, float | None]:
        """Interface name -> the level it gets for overall ``level`` (None: released, not limiting)."""
        quota, pstate = self._quota(), self._pstate()
        share = self.cfg.quota_share if (quota and pstate) else (1.0 if quota else 0.0)
        plan: dict[str, float | None] = {a.name: None for a in self.actuators}
        if quota is not None:
            plan[quota.name] = min(1.0, level / share) if level < share else None
        if pstate is not None:
            plan[pstate.name] = max(0.0, (level - share) / (1 - share)) if share < 1 else 0.0
        return plan

    def _apply_chain(self, level: float) -> None:
        plan = self.plan(level)
        quota, pstate = self._quota(), self._pstate()
        if quota is not None:
            arg = plan[quota.name]
            _call(quota, quota.release if arg is None else quota.apply, arg)
        if pstate is not None:
            _call(pstate, pstate.apply, plan[pstate.name])
        for other in self.actuators:
            if other is not quota and other is not pstate and other.name not in self._released:
                _call(other, other.release, None)
                self._released.add(other.name)

    def _drop(self, actuator: Actuator, error: ActuatorError) -> None:
        self.actuators.remove(actuator)
        self._failed[actuator.name] = str(error)
        try:  # lift what it still holds (caps written before the refusal) so it cannot limit the next one
            actuator.release()
        except ActuatorError:
            pass  # already logged below as refused
        log.error("interface refused, using the next one", interface=actuator.name, error=str(error),
                  chain=self.chain_names())

    def force_minimum(self, reason: str, routine: bool = False) -> None:
        """Every interface to its lowest-power state, now. Never raises; writes first, logs after.

        ``routine``: a normal condition (start, stop) logged at info; anything else is a warning."""
        changed = self.forced_reason != reason
        self.forced_reason = reason
        self._level_since_s = float("inf")
        self.level = 0.0
        self.demand_w = 0.0
        errors: list[tuple[str, str]] = []
        for actuator in list(self.actuators):
            try:
                if isinstance(actuator, JobsHeat):
                    actuator.apply_floor()  # a freeze that waits on no dwell
                else:
                    actuator.apply(0.0)
            except Exception as exc:  # the safety path must reach every interface whatever happens
                errors.append((actuator.name, str(exc) if isinstance(exc, ActuatorError) else repr(exc)))
        self._released.clear()
        if changed:
            (log.info if routine else log.warning)("power forced to minimum", reason=reason)
        for name, error in errors:
            log.error("minimum power write failed", interface=name, error=error)

    def measure(self, t_s: float) -> float | None:
        """Sample measured power (W) and learn the curve when the level was held over the interval: from
        RAPL (plus the platform overhead), else from the mains meter (the whole heater)."""
        if self.meter is None:
            return self._measure_mains(t_s)
        interval_start = self.meter.reference_t_s  # the interval a sample evaluated now covers
        try:
            package_w = self.meter.sample(t_s)
        except ActuatorError as exc:
            log.error("RAPL energy read failed; no measured power", error=str(exc))
            self.meter = None
            return None
        if package_w is None:
            return None
        self.measured_w = package_w + self.cfg.platform_overhead_w
        if not 0 <= self.measured_w <= IMPLAUSIBLE_POWER_FACTOR * self.cfg.max_w:
            if not self._implausible_logged:
                log.error("measured power implausible; not learning from it", measured_w=round(self.measured_w),
                          max_w=self.cfg.max_w)
                self._implausible_logged = True
            return self.measured_w
        held = interval_start is not None and self._level_since_s <= interval_start
        if held and self.forced_reason is None:
            self.curve.learn(self.level, self.measured_w)
        return self.measured_w

    def _measure_mains(self, t_s: float) -> float | None:
        value_w = self.mains_w() if self.mains_w is not None else None
        interval_start, self._last_measure_s = self._last_measure_s, t_s
        self.measured_w = value_w
        if value_w is None or not 0 <= value_w <= IMPLAUSIBLE_POWER_FACTOR * self.cfg.max_w:
            return value_w
        held = interval_start is not None and self._level_since_s <= interval_start
        if held and self.forced_reason is None:
            self.curve.learn(self.level, value_w)
        return value_w

    def status(self) -> dict:
        """Plain-JSON status: demand, level, expected and measured W, the interface chain, failures."""
        return {
            "demand_w": round(self.demand_w, 1),
            "level": round(self.level, 4),
            "expected_w": round(self.curve.power_w(self.level), 1),
            "measured_w": None if self.measured_w is None else round(self.measured_w, 1),
            "forced_reason": self.forced_reason,
            "chain": self.chain_names(),
            "failed": dict(self._failed),
        }

    def verify(self) -> dict[str, tuple[bool, str]]:
        """Each interface's read-back state against what the current level commands: name -> (ok, detail)."""
        plan = self.plan(self.level)
        if self.forced_reason is not None:  # force_minimum put every interface at 0, released ones too
            plan = {name: 0.0 for name in plan}
        results = {}
        for actuator in self.actuators:
            arg = plan[actuator.name]
            if isinstance(actuator, JobsHeat):
                results[actuator.name] = (True, f"jobs: {actuator.readback()}")
                continue
            expected: dict[str, str] | dict[str, int]
            if isinstance(actuator, CgroupQuotaActuator):
                expected = actuator.expected(arg)
            else:
                expected = actuator.expected(1.0 if arg is None else arg)
            try:
                actual = actuator.readback()
            except ActuatorError as exc:
                results[actuator.name] = (False, str(exc))
                continue
            wrong = {k: (v, actual.get(k)) for k, v in expected.items() if str(actual.get(k)) != str(v)}
            results[actuator.name] = (not wrong, f"differs (expected, read): {wrong}" if wrong else
                                      f"{len(expected)} value(s) read back as commanded")
        return results

    def readback(self) -> dict[str, dict]:
        """What each interface holds now, read back from sysfs."""
        result: dict[str, dict] = {}
        for actuator in self.actuators:
            try:
                result[actuator.name] = actuator.readback()
            except ActuatorError as exc:
                result[actuator.name] = {"error": str(exc)}
        return result


def _no_clock() -> float:
    return 0.0


class _Refused(Exception):
    def __init__(self, actuator: Actuator, error: ActuatorError) -> None:
        self.actuator, self.error = actuator, error


def _call(actuator: Actuator, method, arg: float | None) -> None:
    try:
        method() if arg is None else method(arg)
    except ActuatorError as exc:
        raise _Refused(actuator, exc) from exc
