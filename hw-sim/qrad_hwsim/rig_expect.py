"""What a rig observed, the scenario's expectations checked against it, and the report.

The rig records a `Sample` after each model step (time, room air, board power, the levels of the GPIO
output lines it watches) and the times of events: ``start``, ``fire``, ``fault:<device>`` (the first fault
applied to that device) and ``gpio<N>`` (the first time output line N read 1). Each ``[[expect]]`` table is
checked by the function of its ``kind`` in CHECKS, a pure function of the record:

    air_within         from_s, to_s, setpoint_c, band_k   every sample's air within setpoint ± band
    mean_power_above   from_s, to_s, min_w                the time-weighted mean board power above min_w
    power_floor_after  after, within_s, floor_w, hold     power <= floor_w within within_s of the event,
                                                          and (hold, the default) never above it afterwards
    gpio_set_after     line, after, within_s              output line ``line`` reads 1 within within_s

Times are model seconds from the start of the run. The KPIs follow qrad_agent.kpi's definitions: discomfort
is the integral of max(0, |air - setpoint| - band) in K·h, energy the integral of board power in kWh; over
the scenario's [kpi] window (a fire's heat is not a comfort figure).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Sample:
    """The heater as the rig saw it after one step."""

    t_s: float
    air_c: float
    power_w: float
    outputs: dict[int, int] = field(default_factory=dict)


@dataclass
class Record:
    """Samples in time order and the first time of each event."""

    samples: list[Sample] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=lambda: {"start": 0.0})

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        for line, level in sample.outputs.items():
            if level:
                self.event(f"gpio{line}", sample.t_s)

    def event(self, name: str, t_s: float) -> None:
        """Note ``name`` at ``t_s`` unless it already happened."""
        self.events.setdefault(name, t_s)

    def window(self, from_s: float, to_s: float) -> list[Sample]:
        return [s for s in self.samples if from_s <= s.t_s <= to_s]


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict: what was observed, in ``unit``, and when (model s)."""

    name: str
    kind: str
    met: bool
    observed: float | None
    unit: str
    at_s: float | None
    detail: str


Check = Callable[[dict[str, Any], Record], tuple[bool, float | None, str, float | None, str]]
"""(expectation table, record) -> (met, observed, unit, at_s, detail)."""


def _air_within(exp: dict[str, Any], record: Record):
    window = record.window(exp["from_s"], exp["to_s"])
    if not window:
        return False, None, "K", None, "no sample in the window"
    worst = max(window, key=lambda s: abs(s.air_c - exp["setpoint_c"]))
    error = worst.air_c - exp["setpoint_c"]
    return (abs(error) <= exp["band_k"], round(error, 3), "K", worst.t_s,
            f"worst air {worst.air_c:.2f} °C vs {exp['setpoint_c']} ± {exp['band_k']} K")


def _mean_power_above(exp: dict[str, Any], record: Record):
    window = record.window(exp["from_s"], exp["to_s"])
    if len(window) < 2:
        return False, None, "W", None, "fewer than two samples in the window"
    mean_w = _integral(window, lambda s: s.power_w) / (window[-1].t_s - window[0].t_s)
    detail = f"mean over the window > {exp['min_w']} W"
    return mean_w > exp["min_w"], round(mean_w, 1), "W", window[-1].t_s, detail


def _power_floor_after(exp: dict[str, Any], record: Record):
    start_s = record.events.get(exp["after"])
    if start_s is None:
        return False, None, "s", None, f"event {exp['after']!r} never happened"
    after = [s for s in record.samples if s.t_s >= start_s]
    first = next((s for s in after if s.power_w <= exp["floor_w"]), None)
    if first is None or first.t_s - start_s > exp["within_s"]:
        late = "never" if first is None else f"after {first.t_s - start_s:.0f} s"
        return False, None if first is None else first.t_s - start_s, "s", None, f"at the floor {late}"
    delay_s = round(first.t_s - start_s, 1)
    above = [s for s in after if s.t_s > first.t_s and s.power_w > exp["floor_w"]]
    if exp["hold"] and above:
        worst = max(above, key=lambda s: s.power_w)
        return False, delay_s, "s", worst.t_s, f"left the floor: {worst.power_w:.0f} W > {exp['floor_w']} W"
    return True, delay_s, "s", first.t_s, f"{first.power_w:.0f} W <= {exp['floor_w']} W" + (
        ", held to the end" if exp["hold"] else "")


def _gpio_set_after(exp: dict[str, Any], record: Record):
    start_s = record.events.get(exp["after"])
    if start_s is None:
        return False, None, "s", None, f"event {exp['after']!r} never happened"
    first = next((s for s in record.samples if s.t_s >= start_s and s.outputs.get(exp["line"])), None)
    if first is None:
        return False, None, "s", None, f"GPIO {exp['line']} never set after {exp['after']}"
    delay_s = round(first.t_s - start_s, 1)
    return delay_s <= exp["within_s"], delay_s, "s", first.t_s, f"GPIO {exp['line']} set"


CHECKS: dict[str, tuple[Check, dict[str, type | tuple[type, ...]], dict[str, Any]]] = {
    "air_within": (_air_within, {"from_s": (int, float), "to_s": (int, float), "setpoint_c": (int, float),
                                 "band_k": (int, float)}, {}),
    "mean_power_above": (_mean_power_above, {"from_s": (int, float), "to_s": (int, float),
                                             "min_w": (int, float)}, {}),
    "power_floor_after": (_power_floor_after, {"after": str, "within_s": (int, float),
                                               "floor_w": (int, float), "hold": bool}, {"hold": True}),
    "gpio_set_after": (_gpio_set_after, {"line": int, "after": str, "within_s": (int, float)}, {}),
}
"""kind -> (check, its keys and their types, defaults of the optional keys)."""


def parse_expectation(index: int, table: dict[str, Any]) -> dict[str, Any]:
    """A validated ``[[expect]]`` table with its defaults and a name. Raises ValueError naming the fault."""
    where = f"expect[{index}]"
    kind = table.get("kind")
    if kind not in CHECKS:
        raise ValueError(f"{where}: kind must be one of {sorted(CHECKS)}, not {kind!r}")
    _, keys, defaults = CHECKS[kind]
    unknown = set(table) - set(keys) - {"kind", "name"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} for {kind}; expected {sorted(keys)}")
    exp = {**defaults, **table}
    for key, types in keys.items():
        if key not in exp:
            raise ValueError(f"{where}: {kind} needs {key!r}")
        if not isinstance(exp[key], types) or isinstance(exp[key], bool) and types is not bool:
            raise ValueError(f"{where}.{key}: {exp[key]!r} has the wrong type")
    exp.setdefault("name", f"{kind} #{index}")
    return exp


def check(expectations: list[dict[str, Any]], record: Record) -> list[Outcome]:
    """Each expectation's outcome."""
    outcomes = []
    for exp in expectations:
        met, observed, unit, at_s, detail = CHECKS[exp["kind"]][0](exp, record)
        outcomes.append(Outcome(exp["name"], exp["kind"], met, observed, unit, at_s, detail))
    return outcomes


def _integral(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    """Trapezoidal integral of ``value`` over the samples' times (value x s)."""
    return sum((b.t_s - a.t_s) * (value(a) + value(b)) / 2 for a, b in zip(samples, samples[1:]))


def kpis(record: Record, setpoint_c: float, band_k: float = 0.5, from_s: float = 0.0,
         to_s: float = math.inf) -> dict[str, float | None]:
    """Discomfort (K·h), energy (kWh), mean power (W), max and min air (°C) from ``from_s`` to ``to_s``."""
    samples = record.window(from_s, to_s)
    if len(samples) < 2:
        return dict.fromkeys(("from_s", "to_s", "discomfort_kh", "energy_kwh", "mean_power_w", "max_air_c",
                              "min_air_c"))
    span_s = samples[-1].t_s - samples[0].t_s
    outside = _integral(samples, lambda s: max(0.0, abs(s.air_c - setpoint_c) - band_k))
    energy_ws = _integral(samples, lambda s: s.power_w)
    return {"from_s": samples[0].t_s, "to_s": samples[-1].t_s,
            "discomfort_kh": round(outside / 3600, 3), "energy_kwh": round(energy_ws / 3.6e6, 4),
            "mean_power_w": round(energy_ws / span_s, 1),
            "max_air_c": round(max(s.air_c for s in samples), 2),
            "min_air_c": round(min(s.air_c for s in samples), 2)}


def report(name: str, start: datetime, record: Record, outcomes: list[Outcome], kpi: dict[str, Any],
           wall_s: float, ended_by: str) -> dict[str, Any]:
    """The JSON report of a rig run."""
    clock = lambda t_s: None if t_s is None else (start + timedelta(seconds=t_s)).isoformat()  # noqa: E731
    simulated_s = round(record.samples[-1].t_s, 1) if record.samples else 0.0
    return {"scenario": name, "start": start.isoformat(), "simulated_s": simulated_s,
            "wall_s": round(wall_s, 1), "ended_by": ended_by, "all_met": all(o.met for o in outcomes),
            "expectations": [asdict(o) | {"at": clock(o.at_s)} for o in outcomes],
            "kpis": kpi, "events": {k: {"t_s": v, "at": clock(v)} for k, v in sorted(record.events.items(),
                                                                                   key=lambda kv: kv[1])}}


def render(data: dict[str, Any]) -> str:
    """The report as a readable table."""
    lines = [f"rig {data['scenario']}: {data['simulated_s']:.0f} s simulated from {data['start']} "
             f"in {data['wall_s']:.0f} s ({data['ended_by']})",
             f"  {'met':4} {'expectation':34} {'observed':>12} {'at':>9}  detail"]
    for o in data["expectations"]:
        observed = "-" if o["observed"] is None else f"{o['observed']:g} {o['unit']}"
        at = "-" if o["at"] is None else o["at"][11:19]
        verdict = "yes" if o["met"] else "NO"
        lines.append(f"  {verdict:4} {o['name'][:34]:34} {observed:>12} {at:>9}  {o['detail']}")
    k = data["kpis"]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    span = "" if k["to_s"] is None else f" ({k['from_s'] / 60:.0f}-{k['to_s'] / 60:.0f} min)"
    lines.append(f"  KPIs{span}: discomfort {fmt(k['discomfort_kh'], '.2f')} K·h, "
                 f"energy {fmt(k['energy_kwh'], '.3f')} kWh, mean power {fmt(k['mean_power_w'], '.0f')} W, air {fmt(k['min_air_c'], '.2f')} .. "
                 f"{fmt(k['max_air_c'], '.2f')} °C")
    lines.append("  events: " + ", ".join(f"{n} {e['at'][11:19]}" for n, e in data["events"].items()))
    met = sum(o["met"] for o in data["expectations"])
    lines.append(f"  {met}/{len(data['expectations'])} expectations met")
    return "\n".join(lines)
