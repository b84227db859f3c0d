"""The hardware-in-the-loop rig: ``qrad-hwsim rig --root DIR --scenario FILE [--report FILE.json]``.

The live simulator (live.py: the board's sysfs tree, the serial ports, the microphone) driven by a scenario
file, data only (TOML; rigs/*.toml ship with hw-sim and may be named without their path):

    name, start ("2026-01-07T06:00"), duration_s, speed, step_s, seed, initial_air_c, noise
    [weather]      outdoor_c = -2.0 (a constant year), or file = "weather.csv" (an EPW file or the TMYx hourly CSV);
                   neither: the default weather file
    [[occupants]]  at_s, people: people in the room from that time on (0 before the first entry)
    [[fault]]      at_s, device, kind: as ``serve --scenario`` (faults.py)
    [fire]         at_s, scenario (a fire scenario's name, fire/scenarios/), optional peak_kw: the scenario's
                   ignition (onset_s) at at_s. Its "fire" events set the room's heat release rate and CO2 on
                   model time; its "sound" events start on model time and play in real time (a smoke alarm
                   cannot be sped up); its "source" and "ventilation" events are not played (the occupants
                   table governs the people).
    [kpi]          setpoint_c, band_k: the comfort the KPIs measure against; from_s, to_s: their window
    [[expect]]     kind and its keys (rig_expect.py); gpio_set_after's line becomes a GPIO output line of the
                   board (class/gpio/gpioN, direction out) that the agent drives

The rig runs until duration_s of model time or SIGTERM/SIGINT, then writes the report (JSON) and prints it
as a table. Exit status: 0 every expectation met, 1 not, 2 a bad scenario.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import tomllib
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from . import rig_expect
from .faults import TimedFault
from .fire import player, sounds
from .heater import CONTROL_DIR, HeaterSpec, HeaterState
from .live import LiveSimulator, stop_on_signals
from .sysfs_io import read_text, write_files
from .weather import Weather, default_weather_path

RIGS_DIR = Path(__file__).parent / "rigs"
TOP_KEYS = {"name", "description", "start", "duration_s", "speed", "step_s", "seed", "initial_air_c", "noise",
            "weather", "occupants", "fault", "fire", "kpi", "expect"}


@dataclass(frozen=True)
class FireSpec:
    at_s: float
    scenario: str
    peak_kw: float | None = None


@dataclass(frozen=True)
class RigScenario:
    """A parsed rig scenario (see the module docstring)."""

    name: str
    start: datetime
    duration_s: float
    speed: float = 60.0
    step_s: float = 10.0
    seed: int = 0
    initial_air_c: float = 18.0
    noise: bool = True
    outdoor_c: float | None = None
    weather_file: Path | None = None
    occupants: tuple[tuple[float, int], ...] = ()
    faults: tuple[TimedFault, ...] = ()
    fire: FireSpec | None = None
    kpi_setpoint_c: float = 20.0
    kpi_band_k: float = 0.5
    kpi_window_s: tuple[float, float] = (0.0, math.inf)
    expectations: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def output_lines(self) -> list[int]:
        """GPIO output lines the expectations watch."""
        return sorted({e["line"] for e in self.expectations if "line" in e})


def _table(data: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict) or set(table) - allowed:
        raise ValueError(f"[{key}]: allowed keys are {sorted(allowed)}")
    return table


def resolve(name_or_path: str | Path) -> Path:
    """A scenario path, or the name of one shipped in rigs/ (``winter_day``)."""
    path = Path(name_or_path)
    if not path.exists() and not path.suffix and (RIGS_DIR / f"{path}.toml").is_file():
        return RIGS_DIR / f"{path}.toml"
    return path


def parse_scenario(data: dict[str, Any]) -> RigScenario:
    """A RigScenario from decoded TOML. Raises ValueError naming the bad entry."""
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    try:
        weather = _table(data, "weather", {"outdoor_c", "file"})
        fire = _table(data, "fire", {"at_s", "scenario", "peak_kw"})
        kpi = _table(data, "kpi", {"setpoint_c", "band_k", "from_s", "to_s"})
        occupants = tuple(sorted((float(o["at_s"]), int(o["people"])) for o in data.get("occupants", [])))
        faults = tuple(sorted((TimedFault(float(f["at_s"]), str(f["device"]), str(f["kind"]))
                               for f in data.get("fault", [])), key=lambda f: f.at_s))
        scenario = RigScenario(
            name=str(data.get("name", "rig")), start=datetime.fromisoformat(str(data["start"])),
            duration_s=float(data["duration_s"]), speed=float(data.get("speed", 60.0)),
            step_s=float(data.get("step_s", 10.0)), seed=int(data.get("seed", 0)),
            initial_air_c=float(data.get("initial_air_c", 18.0)), noise=bool(data.get("noise", True)),
            outdoor_c=None if "outdoor_c" not in weather else float(weather["outdoor_c"]),
            weather_file=Path(weather["file"]) if "file" in weather else None,
            occupants=occupants, faults=faults,
            fire=FireSpec(float(fire["at_s"]), str(fire["scenario"]),
                          None if fire.get("peak_kw") is None else float(fire["peak_kw"])) if fire else None,
            kpi_setpoint_c=float(kpi.get("setpoint_c", 20.0)), kpi_band_k=float(kpi.get("band_k", 0.5)),
            kpi_window_s=(float(kpi.get("from_s", 0.0)), float(kpi.get("to_s", math.inf))),
            expectations=tuple(rig_expect.parse_expectation(i, e)
                               for i, e in enumerate(data.get("expect", []))))
    except KeyError as exc:
        raise ValueError(f"missing key {exc}") from exc
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"malformed scenario: {exc}") from exc
    if scenario.duration_s <= 0 or scenario.speed <= 0 or scenario.step_s <= 0:
        raise ValueError("duration_s, speed and step_s must be > 0")
    if scenario.fire is not None:
        player.load(scenario.fire.scenario)  # fail now, not at the fire
    return scenario


def load_scenario(path: str | Path) -> RigScenario:
    """Read and parse a scenario file (or a shipped scenario's name)."""
    path = resolve(path)
    try:
        return parse_scenario(tomllib.loads(path.read_text(encoding="utf-8")))
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


class ScheduledOccupancy:
    """People in the room from the scenario's ``[[occupants]]`` entries (the occupancy model's interface)."""

    def __init__(self, start: datetime, entries: tuple[tuple[float, int], ...]) -> None:
        self.changes = [(start + timedelta(seconds=at_s), people) for at_s, people in entries]

    def occupants(self, moment: datetime) -> int:
        people = 0
        for at, count in self.changes:
            if at > moment:
                break
            people = count
        return people


class FirePlay:
    """A fire scenario's fire and sound events, its ignition moved to the rig's ``at_s``."""

    def __init__(self, spec: FireSpec, sound_dir: Path) -> None:
        data = player.load(spec.scenario)
        events = data.get("events", [])
        fires = [e for e in events if e["type"] == "fire"]
        onset_s = float(data.get("onset_s", fires[0]["start_s"] if fires else 0.0))
        self.shift_s = spec.at_s - onset_s
        self.fires = [e if spec.peak_kw is None else dict(e, peak_kw=spec.peak_kw) for e in fires]
        self.sounds = [(float(e["start_s"]) + self.shift_s, _render(e, sound_dir / f"rig_sound_{i}.wav"))
                       for i, e in enumerate(e for e in events if e["type"] == "sound")]
        self.started_s: float | None = None

    def hrr_w(self, t_s: float) -> float:
        """Heat release rate of the fire at model second ``t_s`` (W)."""
        total_kw = 0.0
        for e in self.fires:
            local_s = t_s - (float(e["start_s"]) + self.shift_s)
            if local_s >= 0:
                total_kw += min(float(e["peak_kw"]), float(e["alpha_kw_s2"]) * local_s**2)
        return 1000.0 * total_kw

    def due_sounds(self, t_s: float) -> list[Path]:
        """The sound files whose start has come (each returned once)."""
        due = [path for start_s, path in self.sounds if start_s <= t_s]
        self.sounds = [(start_s, path) for start_s, path in self.sounds if start_s > t_s]
        return due


def _render(event: dict[str, Any], path: Path) -> Path:
    """A sound event rendered to a 16-bit WAV, its duration in real seconds."""
    start_s, end_s = float(event["start_s"]), float(event["end_s"])
    track = player._track(event, np.random.default_rng(0))
    n0, n = int(start_s * sounds.RATE_HZ), int((end_s - start_s) * sounds.RATE_HZ)
    pcm = sounds.to_int16(track.render(n0, n))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sounds.RATE_HZ)
        out.writeframes(pcm.tobytes())
    return path


class Rig:
    """A scenario played on a live simulator, and what the rig observes of the heater."""

    def __init__(self, scenario: RigScenario, root: Path) -> None:
        self.scenario = scenario
        if scenario.outdoor_c is not None:
            weather = Weather.constant(scenario.outdoor_c)
        else:
            weather = Weather.load(scenario.weather_file or default_weather_path())
        spec = HeaterSpec(initial_air_c=scenario.initial_air_c)
        self.sim = LiveSimulator(root, spec, weather, scenario.start, scenario.seed, noise=scenario.noise, faults=scenario.faults,
                                 occupancy=ScheduledOccupancy(scenario.start, scenario.occupants))
        self.root = self.sim.root
        self.outputs = {line: self.root / "class" / "gpio" / f"gpio{line}" for line in scenario.output_lines}
        for folder in self.outputs.values():  # the board's alarm relay / LED lines: outputs the agent drives
            write_files(folder, {"direction": "out", "active_low": 0, "value": 0, "edge": "none"})
        self.fire = FirePlay(scenario.fire, self.root / CONTROL_DIR) if scenario.fire else None
        self.record = rig_expect.Record()
        self.stop = asyncio.Event()
        self._sound_tasks: set[asyncio.Task[float]] = set()

    def on_step(self, state: HeaterState) -> None:
        """After each model step: events, the fire, one sample; stop at the scenario's end."""
        t_s = state.t_s
        for fault in self.scenario.faults:
            if fault.at_s <= t_s:
                self.record.event(f"fault:{fault.device}", t_s)
        if self.fire is not None and t_s >= self.scenario.fire.at_s:  # type: ignore[union-attr]
            self._play_fire(t_s)
        outputs = {line: int(read_text(folder / "value") == "1") for line, folder in self.outputs.items()}
        self.record.add(rig_expect.Sample(t_s, state.air_c, state.power_w, outputs))
        if t_s >= self.scenario.duration_s:
            self.stop.set()

    def _play_fire(self, t_s: float) -> None:
        assert self.fire is not None and self.sim.suite is not None
        self.record.event("fire", t_s)
        self.sim.suite.fire_hrr_w = self.fire.hrr_w(t_s)
        for path in self.fire.due_sounds(t_s):
            play = self.sim.suite.audio.play_wav(path)
            task = asyncio.get_running_loop().create_task(play, name="rig:sound")
            self._sound_tasks.add(task)
            task.add_done_callback(self._sound_tasks.discard)

    async def run(self) -> str:
        """Run until the scenario's end (returns "duration") or a signal ("signal")."""
        signalled = stop_on_signals()
        waiter = asyncio.get_running_loop().create_task(signalled.wait(), name="rig:signal")
        waiter.add_done_callback(lambda _: self.stop.set())
        try:
            await self.sim.run(self.scenario.step_s, self.scenario.speed, self.stop, self.on_step)
        finally:
            waiter.cancel()
            for task in list(self._sound_tasks):
                task.cancel()
            await asyncio.gather(waiter, *self._sound_tasks, return_exceptions=True)
        return "signal" if signalled.is_set() else "duration"

    def report(self, wall_s: float, ended_by: str) -> dict[str, Any]:
        s = self.scenario
        outcomes = rig_expect.check(list(s.expectations), self.record)
        kpi = rig_expect.kpis(self.record, s.kpi_setpoint_c, s.kpi_band_k, *s.kpi_window_s)
        return rig_expect.report(s.name, s.start, self.record, outcomes, kpi, wall_s, ended_by)


async def run_rig(root: Path, scenario_path: Path, report_path: Path | None) -> int:
    """``qrad-hwsim rig``: play the scenario, print the report, write it as JSON; the exit status."""
    scenario = load_scenario(scenario_path)
    rig = Rig(scenario, root)
    async with rig.sim:
        print(f"READY root={rig.root} scenario={scenario.name} speed={scenario.speed:g}", flush=True)
        started = time.monotonic()
        ended_by = await rig.run()
    data = rig.report(time.monotonic() - started, ended_by)
    if report_path is not None:
        report_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(rig_expect.render(data), flush=True)
    return 0 if data["all_met"] else 1
