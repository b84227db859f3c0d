"""How many comfort starts any controller can have within 0.3 K in hw-sim's room, and at what least cost.

For each setpoint raise of the default home schedule in the first weeks of January, February and December
(the weeks of `benchmarks/thermostat.py`), on the shared weather: the best case for the arrival is the air
held at the top of the lower comfort band (eco + 0.5 K, above which every minute counts as too warm) long
enough for the envelope to reach equilibrium with it (its time constant is about 45 h), then full power.
The air then rises towards its ceiling at full power, (H_am T_mass + H_ao T_out + P_max) / (H_am + H_ao),
with the air node's time constant C_air / (H_am + H_ao) (about 24 min). A raise whose ceiling is below the
setpoint less 0.3 K cannot be reached without the room above the lower band before it; for the others, the
least too-warm discomfort is that of the last rise from the band's top to the setpoint less 0.3 K.
Room constants from hw-sim (qrad_hwsim/room.py, RoomParams; a benchmark may read them, the agent does not);
outdoor temperature: the mean of the 4 h before the raise; no sun, no occupants (both would help a little).

    python benchmarks/arrival_bound.py
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta

from qrad_hwsim import weather as weather_mod
from qrad_hwsim.room import RoomParams
from qrad_hwsim.sim_clock import parse_start

from qrad_agent.control.schedule import ModeSetpoints, default_home

WEEKS = {"January": "01-01", "February": "02-01", "December": "12-01"}
MAX_W = 500.0
BAND_K = 0.5
TOLERANCE_K = 0.3
STEP = timedelta(minutes=1)


def raises(start: datetime, days: int = 7) -> list[tuple[datetime, float, float]]:
    """(time, setpoint before °C, after °C) of each raise of the default home schedule."""
    schedule = default_home(ModeSetpoints(comfort_c=20.0, eco_c=19.0, frost_c=7.0))
    out, t, prev = [], start, schedule.setpoint_at(start)
    while t < start + timedelta(days=days):
        t += STEP
        now = schedule.setpoint_at(t)
        if now > prev + 0.25:
            out.append((t, prev, now))
        prev = now
    return out


def eco_hours(start: datetime, days: int = 7) -> float:
    """Hours below the comfort setpoint (eco) in the week from ``start``."""
    schedule = default_home(ModeSetpoints(comfort_c=20.0, eco_c=19.0, frost_c=7.0))
    steps = int(days * 86400 / STEP.total_seconds())
    return sum(schedule.setpoint_at(start + k * STEP) < 20.0 for k in range(steps)) * STEP.total_seconds() / 3600


def best_case(room: RoomParams, outdoor_c: float, from_c: float, to_c: float) -> float | None:
    """Least too-warm discomfort (K·h) to be at ``to_c`` less TOLERANCE_K at the raise; None: unreachable."""
    top_c, goal_c = from_c + BAND_K, to_c - TOLERANCE_K
    mass_c = (room.h_am_w_k * top_c + room.h_mo_w_k * outdoor_c) / (room.h_am_w_k + room.h_mo_w_k)
    h_air = room.h_am_w_k + room.h_ao_w_k
    ceiling_c = (room.h_am_w_k * mass_c + room.h_ao_w_k * outdoor_c + MAX_W) / h_air
    if ceiling_c <= goal_c:
        return None
    tau_s = room.c_air_j_k / h_air
    rise_s = tau_s * math.log((ceiling_c - top_c) / (ceiling_c - goal_c))
    return (ceiling_c - top_c) * (rise_s - tau_s * (1.0 - math.exp(-rise_s / tau_s))) / 3600.0


def main() -> int:
    try:
        weather = weather_mod.Weather.load(weather_mod.default_weather_path())
    except FileNotFoundError as exc:
        print(f"weather data absent: {exc}")
        return 1
    room = RoomParams()
    reachable = total = 0
    cost_kh = 0.0
    for week, start in WEEKS.items():
        for at, from_c, to_c in raises(parse_start(start)):
            secs = [(at - timedelta(minutes=m)) for m in range(0, 240, 10)]
            outdoor_c = sum(weather.outdoor_c(weather_mod.t_year_s_of(s.month, s.day, s.hour * 3600 + s.minute * 60))
                            for s in secs) / len(secs)
            cost = best_case(room, outdoor_c, from_c, to_c)
            total += 1
            if cost is None:
                print(f"{week:<9} {at:%a %d %b %H:%M}  outdoor {outdoor_c:5.1f} °C: unreachable")
                continue
            reachable += 1
            cost_kh += cost
    eco_h = sum(eco_hours(parse_start(start)) for start in WEEKS.values())
    loss_w_k = room.h_ao_w_k + room.h_am_w_k * room.h_mo_w_k / (room.h_am_w_k + room.h_mo_w_k)
    print(f"holding the band's top instead of the eco setpoint: {eco_h:.0f} h x {BAND_K} K x {loss_w_k:.2f} W/K = "
          f"{eco_h * BAND_K * loss_w_k / 1000:.2f} kWh more heat over the three weeks (steady state)")
    print(f"reachable within {TOLERANCE_K} K: {reachable} of {total} ({reachable / total:.0%}); least too-warm "
          f"discomfort for those {cost_kh:.2f} K·h (the envelope at equilibrium with the band's top before each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
