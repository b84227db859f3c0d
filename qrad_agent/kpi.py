"""Key performance indicators of a heating run, as BOPTEST counts them, plus the compute side.

Inputs are equally spaced samples (``dt_s``) of the true room air temperature (°C), the setpoint (°C), the
heater's electrical power (W) and the compute it delivered (core-equivalents at nominal frequency).
- discomfort_kh: ∫ max(0, |T - setpoint| - band) dt, K·h (band 0.5 K; BOPTEST's thermal discomfort);
- rms_error_k: root mean square of T - setpoint, K;
- overshoot_k: the largest rise of T above a new setpoint after a setpoint step up of at least 1 K, K;
- energy_kwh: ∫ P dt; compute_core_h: ∫ compute dt (core-hours at nominal frequency);
- compute_cycles: how many times compute stopped and started again (compute below 1 % of its maximum
  counts as stopped);
- discomfort_cold_kh / discomfort_warm_kh: the two sides of discomfort_kh (below / above the band);
  discomfort_warm_floor_kh: the part of the too-warm side while the heater was at its floor (power at most
  ``floor_w`` + FLOOR_TOLERANCE_W: the sun or the heater's own idle heat, which no heater control removes);
- arrivals: setpoint raises of at least 0.5 K; arrival_within_frac: the share of them with the room within
  ARRIVAL_TOLERANCE_K of the new setpoint at the raise; arrival_error_k: the mean of room - setpoint there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

COMFORT_BAND_K = 0.5
STEP_MIN_K = 1.0
STOPPED_FRACTION = 0.01
FLOOR_TOLERANCE_W = 10.0
ARRIVAL_TOLERANCE_K = 0.3
ARRIVAL_MIN_STEP_K = 0.5


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one run; see the module docstring for definitions and units."""

    days: float
    discomfort_kh: float
    rms_error_k: float
    overshoot_k: float | None
    energy_kwh: float
    compute_core_h: float
    compute_cycles: int
    mean_power_w: float
    discomfort_cold_kh: float = 0.0
    discomfort_warm_kh: float = 0.0
    discomfort_warm_floor_kh: float = 0.0
    arrivals: int = 0
    arrival_within_frac: float | None = None
    arrival_error_k: float | None = None

    @property
    def discomfort_actionable_kh(self) -> float:
        """Discomfort the heater can act on: too cold, and too warm while above its floor (K·h)."""
        return self.discomfort_kh - self.discomfort_warm_floor_kh

    def as_dict(self) -> dict:
        """Plain-JSON values."""
        return asdict(self)


def compute_kpis(dt_s: float, air_c: np.ndarray, setpoint_c: np.ndarray, power_w: np.ndarray,
                 compute: np.ndarray, compute_max: float, floor_w: float = 0.0) -> Kpis:
    """KPIs of equally spaced samples; arrays of equal length n > 0. Raises ValueError otherwise.
    ``floor_w``: the heater's lowest power (W), for discomfort_warm_floor_kh."""
    arrays = [np.asarray(a, dtype=float) for a in (air_c, setpoint_c, power_w, compute)]
    if len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError("KPI inputs must be non-empty arrays of equal length")
    air_c, setpoint_c, power_w, compute = arrays
    error = air_c - setpoint_c
    hours = dt_s / 3600.0
    outside = np.maximum(0.0, np.abs(error) - COMFORT_BAND_K)
    running = compute > STOPPED_FRACTION * compute_max
    starts = int(np.count_nonzero(running[1:] & ~running[:-1]))
    cold = np.maximum(0.0, -error - COMFORT_BAND_K)
    warm = np.maximum(0.0, error - COMFORT_BAND_K)
    at_floor = power_w <= floor_w + FLOOR_TOLERANCE_W
    raises = np.flatnonzero(np.diff(setpoint_c) >= ARRIVAL_MIN_STEP_K) + 1
    arrival = error[raises]
    return Kpis(
        days=len(air_c) * dt_s / 86400.0,
        discomfort_kh=float(outside.sum() * hours),
        rms_error_k=float(np.sqrt(np.mean(error**2))),
        overshoot_k=overshoot_k(air_c, setpoint_c),
        energy_kwh=float(power_w.sum() * hours / 1000.0),
        compute_core_h=float(compute.sum() * hours),
        compute_cycles=starts,
        mean_power_w=float(power_w.mean()),
        discomfort_cold_kh=float(cold.sum() * hours),
        discomfort_warm_kh=float(warm.sum() * hours),
        discomfort_warm_floor_kh=float(warm[at_floor].sum() * hours),
        arrivals=len(raises),
        arrival_within_frac=float(np.mean(np.abs(arrival) <= ARRIVAL_TOLERANCE_K)) if len(raises) else None,
        arrival_error_k=float(np.mean(arrival)) if len(raises) else None,
    )


def overshoot_k(air_c: np.ndarray, setpoint_c: np.ndarray) -> float | None:
    """Largest T - setpoint after any setpoint step up >= 1 K, until the next change; None if no step."""
    changes = np.flatnonzero(np.diff(setpoint_c) != 0) + 1
    bounds = [*changes, len(setpoint_c)]
    worst = None
    for start, end in zip(bounds[:-1], bounds[1:]):
        if setpoint_c[start] - setpoint_c[start - 1] >= STEP_MIN_K:
            value = max(0.0, float(np.max(air_c[start:end] - setpoint_c[start])))
            worst = value if worst is None else max(worst, value)
    return worst


def format_table(rows: dict[str, Kpis]) -> str:
    """A text table with one column per run name."""
    names = list(rows)
    lines = [f"{'KPI':<28}" + "".join(f"{n:>16}" for n in names)]
    fields = [("discomfort (K·h)", "discomfort_kh", "{:.2f}"), ("  too cold (K·h)", "discomfort_cold_kh", "{:.2f}"),
              ("  too warm (K·h)", "discomfort_warm_kh", "{:.2f}"),
              ("  too warm at floor (K·h)", "discomfort_warm_floor_kh", "{:.2f}"),
              ("  heater can act on (K·h)", "discomfort_actionable_kh", "{:.2f}"),
              ("arrivals within 0.3 K", "arrival_within_frac", "{:.0%}"),
              ("mean arrival error (K)", "arrival_error_k", "{:+.2f}"), ("RMS error (K)", "rms_error_k", "{:.3f}"),
              ("overshoot after step (K)", "overshoot_k", "{:.3f}"), ("heating energy (kWh)", "energy_kwh",
              "{:.2f}"), ("mean power (W)", "mean_power_w", "{:.1f}"),
              ("compute (core·h @nominal)", "compute_core_h", "{:.1f}"),
              ("compute stop/start cycles", "compute_cycles", "{:d}"), ("simulated days", "days", "{:.2f}")]
    for label, key, fmt in fields:
        cells = []
        for n in names:
            value = getattr(rows[n], key)
            cells.append(f"{'n/a' if value is None else fmt.format(value):>16}")
        lines.append(f"{label:<28}" + "".join(cells))
    return "\n".join(lines)
