"""Fire detection evaluation: scenarios, real data sets, alarm-sound trials and CPU cost.

    python benchmarks/fire.py [--quick] [--only scenarios,datasets,sound,cpu]

Prints, per hw-sim fire scenario (hw-sim/qrad_hwsim/fire/scenarios): detected or not, time from onset
to ALARM, false alarms per simulated day; on the replayed data sets (../shared/data): the IoT smoke set
in time order with precision/recall/F1 on its time-ordered test part (the last 30 % of rows, never a
random split), the UL FSRI armchair fire (time from ignition to ALARM) and the UCI office occupancy days
(false alarms). Then the alarm-sound trials (T3 in household noise at 0-20 dB SNR, 200 trials; an hour of
each non-alarm sound) and the detector's CPU cost per second of audio (time.process_time).
Everything runs as fast as possible on injected time: nothing sleeps, nothing reads the wall clock.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrad_agent.fire.alarm_sound import AlarmSoundDetector
from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.engine import FireEngine, FireInputs
from qrad_agent.fire.fusion import FireState
from qrad_hwsim.fire import player, sounds

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_FRACTION = 0.3


# -- scenarios --------------------------------------------------------------------------------------

def run_scenario(spec: dict[str, Any], cfg: FireConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Play one scenario through a fresh engine; an ALARM in a nuisance counts and is reset."""
    cfg = cfg or FireConfig(co2_channels=["co2"])
    engine = FireEngine(cfg)
    onset = spec.get("onset_s")
    alarms: list[float] = []
    pre_alarms, last_state, days = 0, FireState.NORMAL, spec["duration_s"] / 86400
    for tick in player.Player(spec, seed).ticks():
        for t_block, block in tick.audio:
            engine.feed_audio(t_block, block)
        d = engine.step(tick.t_s, FireInputs(temp_c=tick.temp_c, co2_ppm=tick.co2_ppm, pm_ug_m3=tick.pm_ug_m3,
                                             power_w=tick.power_w, sound_db_a=tick.sound_db_a, hour=tick.hour))
        if d.state is FireState.PRE_ALARM and last_state is not FireState.PRE_ALARM:
            pre_alarms += 1
        if d.state is FireState.ALARM:
            alarms.append(tick.t_s)
            if spec["kind"] == "fire":
                break
            engine.fusion.reset(authorised=True, who="benchmark")
        last_state = d.state
    result = {"name": spec["name"], "kind": spec["kind"], "days": days, "pre_alarms": pre_alarms}
    if spec["kind"] == "fire":
        result["detected"] = bool(alarms) and alarms[0] >= onset
        result["latency_s"] = alarms[0] - onset if alarms else None
        result["alarm_reason"] = d.reason if alarms else ""
        result["false_alarms"] = sum(1 for t in alarms if t < onset)
    else:
        result["false_alarms"] = len(alarms)
    return result


def scenarios(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(player.SCENARIO_DIR.glob("*.json")):
        spec = player.load(path)
        if quick and spec.get("days", 0) > 2:
            spec = player.load(path)  # keep the program, shortened below
            spec["duration_s"] = 2 * 86400
        rows.append(run_scenario(spec))
    print("\n== hw-sim scenarios")
    print(f"{'scenario':26} {'kind':9} {'detected':8} {'onset->ALARM s':>14} {'false/day':>9} {'pre':>4}")
    for r in rows:
        det = "" if r["kind"] != "fire" else ("yes" if r["detected"] else "NO")
        lat = "" if r.get("latency_s") is None else f"{r['latency_s']:.0f}"
        print(f"{r['name']:26} {r['kind']:9} {det:8} {lat:>14} {r['false_alarms'] / r['days']:9.3f} "
              f"{r['pre_alarms']:4d}")
    return rows


# -- data sets --------------------------------------------------------------------------------------

def iot_smoke() -> dict[str, float]:
    """Replay the IoT smoke set at 1 Hz in time order; score the per-row fused state on the last 30 %."""
    path = DATA / "smoke_iot" / "smoke_detection_iot_subset_T_RH_eCO2.csv"
    data = np.genfromtxt(path, delimiter=",", skip_header=1)
    engine = FireEngine(FireConfig(co2_channels=["co2"]))
    predicted = np.zeros(len(data), dtype=bool)
    for i, (_, temp, _, eco2, _) in enumerate(data):
        d = engine.step(float(i), FireInputs(temp_c=float(temp), co2_ppm=float(eco2)))
        predicted[i] = d.state in (FireState.ALARM, FireState.PRE_ALARM)
        if d.state is FireState.ALARM:
            engine.fusion.reset(authorised=True)  # score per row: do not let one latch label the rest
    split = int(len(data) * (1 - TEST_FRACTION))
    labels = data[:, 4].astype(bool)
    out = {"split_row": split, **_prf(labels[split:], predicted[split:]),
           "train": _prf(labels[:split], predicted[:split])}
    out["baseline"] = _stump_baseline(data, split)
    return out


def _prf(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    tp, fp, fn = int(np.sum(y & p)), int(np.sum(~y & p)), int(np.sum(y & ~p))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "positives": int(y.sum()), "rows": int(len(y))}


def _stump_baseline(data: np.ndarray, split: int) -> dict[str, Any]:
    """The best single-threshold rule on one column, fitted on the train part: what the columns allow."""
    best: dict[str, Any] = {"f1_train": -1.0}
    y_train, y_test = data[:split, 4].astype(bool), data[split:, 4].astype(bool)
    for col, name in ((1, "temperature"), (2, "humidity"), (3, "eCO2")):
        for q in np.linspace(0.01, 0.99, 99):
            thr = float(np.quantile(data[:split, col], q))
            for sign in (1, -1):
                f1 = _prf(y_train, sign * data[:split, col] >= sign * thr)["f1"]
                if f1 > best["f1_train"]:
                    test = _prf(y_test, sign * data[split:, col] >= sign * thr)
                    best = {"f1_train": f1, "rule": f"{name} {'>=' if sign > 0 else '<='} {thr:.1f}",
                            "f1_test": test["f1"]}
    return best


def fsri() -> dict[str, Any]:
    """The UL FSRI armchair fire: a low, off-plume thermocouple and the O2 depletion as CO2."""
    path = DATA / "fire_compartment_fsri" / "RedAccent_Closed_Corner_1.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    temp_col, o2_col = "Quadrant A Temperature 1.8 m Below Ceiling", "Quad A Oxygen 1.8 m Below Ceiling"
    engine = FireEngine(FireConfig(co2_channels=["co2"], co2={"room_volume_m3": 3.7 * 3.7 * 2.4}))
    o2_0 = float(rows[0][o2_col])
    for row in rows:
        t = float(row["Time"])
        co2 = 420.0 + max(0.0, o2_0 - float(row[o2_col])) * 1e4  # O2 to CO2 about one to one by volume
        d = engine.step(t, FireInputs(temp_c=float(row[temp_col]), co2_ppm=co2, power_w=0.0))
        if d.state is FireState.ALARM:
            return {"channel": temp_col, "ignition_to_alarm_s": t, "temp_c": float(row[temp_col]),
                    "reason": d.reason}
    return {"channel": temp_col, "ignition_to_alarm_s": None}


def uci_occupancy() -> dict[str, Any]:
    """The UCI office days replayed with their occupancy as presence: every ALARM is false."""
    out = {}
    for name in ("datatraining.txt", "datatest.txt"):
        with (DATA / "occupancy_uci" / name).open() as f:
            rows = list(csv.reader(f))[1:]
        engine = FireEngine(FireConfig(co2_channels=["co2"]))
        alarms = pre = 0
        t0 = None
        for row in rows:
            stamp = time.strptime(row[1], "%Y-%m-%d %H:%M:%S")
            t = time.mktime(stamp)
            t0 = t if t0 is None else t0
            d = engine.step(t - t0, FireInputs(temp_c=float(row[2]), co2_ppm=float(row[5]),
                                               occupancy=row[7] == "1", hour=stamp.tm_hour + stamp.tm_min / 60))
            pre += d.state is FireState.PRE_ALARM
            if d.state is FireState.ALARM:
                alarms += 1
                engine.fusion.reset(authorised=True)
        out[name] = {"days": (t - t0) / 86400, "false_alarms": alarms, "pre_alarm_rows": pre}
    return out


def datasets() -> dict[str, Any]:
    iot, fire, occ = iot_smoke(), fsri(), uci_occupancy()
    print("\n== data sets")
    print(f"IoT smoke (time-ordered split at row {iot['split_row']}, test = last {TEST_FRACTION:.0%}): "
          f"precision {iot['precision']:.3f} recall {iot['recall']:.3f} F1 {iot['f1']:.3f} "
          f"({iot['positives']} positive of {iot['rows']} rows); train part F1 {iot['train']['f1']:.3f}")
    b = iot["baseline"]
    print(f"  best one-column threshold fitted on the train part: {b['rule']}: train F1 {b['f1_train']:.3f}, "
          f"test F1 {b['f1_test']:.3f}")
    print(f"UL FSRI armchair ({fire['channel']}): ignition -> ALARM "
          f"{fire['ignition_to_alarm_s']} s; {fire.get('reason', '')[:160]}")
    for name, r in occ.items():
        print(f"UCI occupancy {name}: {r['days']:.1f} days, false alarms {r['false_alarms']}, "
              f"pre-alarm minutes {r['pre_alarm_rows']}")
    return {"iot": iot, "fsri": fire, "uci": occ}


# -- alarm sound ------------------------------------------------------------------------------------

def t3_trials(n: int = 200, seed: int = 1, low_frequency: bool = False) -> dict[str, Any]:
    """T3 at a random pitch in 2.8-3.8 kHz (or, with ``low_frequency``, a 470-570 Hz square wave) and
    cheap-alarm timing (on and short off 0.4-0.65 s, long off 1.2-2.0 s) in household noise (pink noise,
    voiced speech, music) at a random SNR in [0, 20] dB: alarm power while on vs noise power, full band."""
    rng = np.random.default_rng(seed)
    latencies, missed = [], []
    for trial in range(n):
        snr = float(rng.uniform(0, 20))
        square = low_frequency
        freq = float(rng.uniform(470, 570)) if square else float(rng.uniform(2800, 3800))
        on, gap = float(rng.uniform(0.4, 0.65)), float(rng.uniform(0.4, 0.65))
        long_ = float(rng.uniform(1.2, 2.0))
        onset = float(rng.uniform(2.0, 6.0))
        noise = sounds.Household(rng, length_s=onset + 12).render(0, int((onset + 12) * sounds.RATE_HZ))
        amp = sounds.rms(noise) * 10 ** (snr / 20) * (1.0 if square else math.sqrt(2))
        beeps = sounds.t3_beeps(onset, onset + 12, freq, amp, on, gap, long_, square=square)
        x = (noise + sounds.BeepTrack(beeps).render(0, noise.size)) * 0.03
        det = AlarmSoundDetector(FireConfig().sound)
        found = None
        for i in range(0, x.size - 1999, 2000):
            t = (i + 2000) / sounds.RATE_HZ
            if det.feed(t, sounds.to_int16(x[i : i + 2000])) and found is None:
                found = t - onset
                break
        if found is None or found > 6.0:
            missed.append({"snr_db": round(snr, 1), "freq_hz": round(freq), "on_s": round(on, 2),
                           "gap_s": round(gap, 2), "long_s": round(long_, 2), "latency_s": found})
        if found is not None:
            latencies.append(found)
    rate = 1 - len(missed) / n
    return {"trials": n, "detected_within_6s": rate, "latency_median_s": float(np.median(latencies)),
            "latency_max_s": float(np.max(latencies)), "missed": missed}


T4 = [(0.1, 0.1)] * 3 + [(0.1, 5.0)]
"""Temporal-four, the CO alarm: four 100 ms pulses, then 5 s off."""
NON_ALARM = {
    "T4 CO alarm 3.1 kHz": lambda s: sounds.pattern_beeps(0, s, 3100, 0.1, T4),
    "steady 3.1 kHz tone": lambda s: [(0.0, s, 3100.0, 0.1, False)],
    "microwave 3 beeps/30 s": lambda s: [b for t in np.arange(0, s, 30.0)
                                         for b in sounds.pattern_beeps(t, t + 2.9, 3000, 0.1, [(0.5, 0.5)])[:3]],
    "microwave 5 beeps/30 s": lambda s: [b for t in np.arange(0, s, 30.0)
                                         for b in sounds.pattern_beeps(t, t + 4.9, 3000, 0.1, [(0.5, 0.5)])[:5]],
    "phone ring 3.2 kHz": lambda s: sounds.pattern_beeps(0, s, 3200, 0.1, [(0.4, 0.2), (0.4, 2.0)]),
    "TV beeps": lambda s: sounds.random_beeps(0, s, 0.1, np.random.default_rng(5), [1000, 2900, 3200]),
    "speech and music": lambda s: [],
    "T4 CO alarm 520 Hz square": lambda s: sounds.pattern_beeps(0, s, 520, 0.1, T4, square=True),
    "steady 520 Hz square tone": lambda s: [(0.0, s, 520.0, 0.1, True)],
}


def non_alarm_hours(seconds: float = 3600.0) -> dict[str, int]:
    """Each non-alarm sound over household noise with speech and music; counts T3 confirmations."""
    out = {}
    for k, (name, make) in enumerate(NON_ALARM.items()):
        rng = np.random.default_rng(100 + k)
        house = sounds.Household(rng, speech=1.0, music=1.0)
        track = sounds.BeepTrack(make(seconds))
        det = AlarmSoundDetector(FireConfig().sound)
        chunk = 16000 * 10
        for n0 in range(0, int(seconds * 16000), chunk):
            x = house.render(n0, chunk) * 0.01 + track.render(n0, chunk)
            pcm = sounds.to_int16(x)
            for i in range(0, chunk, 2000):
                det.feed((n0 + i + 2000) / 16000, pcm[i : i + 2000])
        out[name] = det.confirmations
    return out


def cpu_cost(seconds: float = 600.0) -> dict[str, float]:
    """process_time of the detector per second of processed audio (blocks pre-rendered, not counted)."""
    rng = np.random.default_rng(7)
    house = sounds.Household(rng)
    pcm = sounds.to_int16(house.render(0, int(60 * 16000)) * 0.02)
    engine = FireEngine(FireConfig())
    start = time.process_time()
    t = 0.0
    for rep in range(int(seconds / 60)):
        for i in range(0, pcm.size, 2000):
            t += 0.125
            engine.feed_audio(t, pcm[i : i + 2000])
            if i % 32000 == 0:  # the sensor evaluation every 2 s
                engine.step(t, FireInputs(temp_c=20.0, co2_ppm=600.0, power_w=300.0))
    used = time.process_time() - start
    return {"audio_s": seconds, "cpu_s": used, "core_percent": 100 * used / seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2-day program, 50 trials, 10 min per sound")
    ap.add_argument("--only", default="scenarios,datasets,sound,cpu")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    if "scenarios" in parts:
        scenarios(args.quick)
    if "datasets" in parts:
        datasets()
    if "sound" in parts:
        print("\n== alarm sound")
        for label, lf in (("T3 2.8-3.8 kHz", False), ("T3 520 Hz square", True)):
            trials = t3_trials(50 if args.quick else 200, low_frequency=lf)
            print(f"{label} in household noise, 0-20 dB SNR: {trials['detected_within_6s']:.1%} of "
                  f"{trials['trials']} detected within 6 s; latency median {trials['latency_median_s']:.2f} s, "
                  f"max {trials['latency_max_s']:.2f} s; missed: {trials['missed']}")
        for name, n in non_alarm_hours(600.0 if args.quick else 3600.0).items():
            print(f"  {name:28} T3 confirmations in {'10 min' if args.quick else 'an hour'}: {n}")
    if "cpu" in parts:
        cpu = cpu_cost(120.0 if args.quick else 600.0)
        print(f"\n== CPU: {cpu['cpu_s']:.2f} s of CPU for {cpu['audio_s']:.0f} s of audio: "
              f"{cpu['core_percent']:.3f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
