"""The room-temperature rate check against faults and a real fire, one run, against the previous rule.

Rules compared, each fed sample by sample at the sensor's polling period (room defaults: 1 K/s, 1 K floor):
- none: every sample used as it is;
- previous rule (the baseline, re-implemented here): each sample against the previous one, flagged or not;
- guard: `qrad_agent.sensing.plausibility.guard_rate` (the last accepted sample is the reference; a level
  reached too fast is held until a walk back or a physically possible path confirms it).
Inputs: one sensor at 0.2 s stepping 19.9 -> -1.0 and -> 57 °C and staying for 10 min (the issue's fault),
counted as the samples accepted after the step; and the UL FSRI armchair fire (../shared/data/
fire_compartment_fsri, MIT) at 1.2 m and 1.8 m below the ceiling, sampled every 1, 2, 5 and 10 s, through
the fire engine: seconds from ignition to ALARM.

    python benchmarks/plausibility.py
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from qrad_drivers.base import Quality, Reading

from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.engine import FireEngine, FireInputs
from qrad_agent.fire.fusion import FireState
from qrad_agent.sensing.plausibility import RateGuard, guard_rate

# ../shared/data beside the checkout (or beside the directory of worktrees holding it)
DATA = next((p / "shared" / "data" / "fire_compartment_fsri" for p in Path(__file__).resolve().parents[2:4]
             if (p / "shared" / "data").is_dir()), Path("../shared/data/fire_compartment_fsri"))
RATE, FLOOR = 1.0, 1.0
Rule = Callable[[Reading], Reading]


def rule_none() -> Rule:
    return lambda r: r


def rule_previous() -> Rule:
    """The rule before issue 12: compare with the previous sample, even a flagged one."""
    last: list[Reading] = []

    def check(r: Reading) -> Reading:
        prev = last[-1] if last else None
        last.append(r)
        if prev is None or abs(r.value - prev.value) <= RATE * (r.t_s - prev.t_s) + FLOOR:
            return r
        return replace(r, quality=Quality.FAULT, reason="spike")
    return check


def rule_guard() -> Rule:
    guard = RateGuard()
    return lambda r: guard_rate(guard, r, RATE, FLOOR)


RULES = {"none": rule_none, "previous rule": rule_previous, "guard": rule_guard}


def stepped(level_c: float, make: Callable[[], Rule]) -> int:
    """Samples accepted in the 10 min after the step."""
    check, accepted = make(), 0
    for k in range(int(11 * 60 / 0.2)):
        t = k * 0.2
        value = (level_c if t >= 60.0 else 19.9) + 0.03 * math.sin(7.3 * t)
        out = check(Reading("room", round(value, 2), "°C", t))
        accepted += t >= 60.0 and out.ok
    return accepted


def fsri(column: str, every_s: int, make: Callable[[], Rule]) -> float | None:
    with (DATA / "RedAccent_Closed_Corner_1.csv").open() as f:
        rows = list(csv.DictReader(f))
    check, engine = make(), FireEngine(FireConfig())
    for i, row in enumerate(rows):
        if i % every_s:
            continue
        t = float(row["Time"])
        out = check(Reading("room", float(row[column]), "°C", t))
        if engine.step(t, FireInputs(temp_c=out.value if out.ok else None, power_w=0.0)).state is FireState.ALARM:
            return t
    return None


def main() -> int:
    print("Stepped sensor (0.2 s, 10 min after the step): samples accepted as OK (3000 = all)")
    print(f"{'step':<18}" + "".join(f"{name:>16}" for name in RULES))
    for level in (-1.0, 57.0):
        print(f"{f'19.9 -> {level:g} °C':<18}" + "".join(f"{stepped(level, make):>16}" for make in RULES.values()))
    if not (DATA / "RedAccent_Closed_Corner_1.csv").exists():
        print(f"\nUL FSRI fire: data set not found in {DATA}; skipped")
        return 0
    print("\nUL FSRI armchair fire: seconds from ignition to ALARM (heat only)")
    print(f"{'thermocouple, period':<28}" + "".join(f"{name:>16}" for name in RULES))
    for column in ("Quadrant A Temperature 1.2 m Below Ceiling", "Quadrant A Temperature 1.8 m Below Ceiling"):
        for every in (1, 2, 5, 10):
            cells = [fsri(column, every, make) for make in RULES.values()]
            label = f"{column.split('Temperature ')[1].replace(' Below Ceiling', '')} below ceiling, {every} s"
            print(f"{label:<28}" + "".join(f"{'none' if c is None else f'{c:.0f}':>16}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
