"""Command line of the simulator: ``qrad-hwsim serve``, ``qrad-hwsim rig`` and ``qrad-hwsim fault``.

serve: builds the sysfs tree of a heater under ``--root`` (the directory standing for /sys), prints
``READY root=<DIR>`` on stdout, then runs the model in real time times ``--speed`` until SIGTERM or
SIGINT, and exits 0. ``--trace FILE.csv`` appends one row per step.

With ``--devices all`` (the default) every sensor of a heater is served too (see devices/suite.py).

fault: tells a running serve process to inject a fault: ``--sensor stuck|missing|ok`` for the room
temperature sensor (``<root>/.hwsim/sensor_fault``), or ``--device NAME --kind KIND`` for any device
(``<root>/.hwsim/faults.json``); both are read every step. ``serve --scenario FILE`` plays timed faults.

rig: the hardware-in-the-loop rig (rig.py): serve's simulator driven by a scenario file (weather, occupants,
faults, a fire, expectations), until the scenario's end or SIGTERM; prints the report, exit 0 if every
expectation was met, 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import astuple, fields
from pathlib import Path
from typing import TextIO

from .board import BoardSpec
from .faults import live_simulator, load_scenario, outcome_path, request_fault
from .heater import HeaterSpec, HeaterState, sensor_fault_path
from .live import LiveSimulator, stop_on_signals
from .rig import run_rig
from .sensor import SENSOR_FAULTS
from .sim_clock import parse_start
from .sysfs_io import write_text_atomic
from .weather import Weather, default_weather_path

TRACE_COLUMNS = ("t_s", "air_c", "mass_c", "outdoor_c", "power_w", "compute_core_equiv", "sensor_c")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qrad-hwsim``."""
    parser = argparse.ArgumentParser(prog="qrad-hwsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="build the sysfs tree and run the heater and its room")
    serve.add_argument("--root", type=Path, required=True, help="directory standing for /sys")
    serve.add_argument("--speed", type=float, default=600.0, help="model seconds per real second")
    serve.add_argument("--step", type=float, default=10.0, help="model step, s")
    serve.add_argument("--start", default="01-01", help="MM-DD or YYYY-MM-DD (default year 2026)")
    serve.add_argument("--weather", type=Path, help="weather file: an EPW file or the TMYx hourly CSV (default: $QRAD_WEATHER_FILE, else the Lyon-Bron year shipped with hw-sim)")
    serve.add_argument("--initial-air-c", type=float, default=16.0, help="starting room air, °C")
    serve.add_argument("--no-freq-list", action="store_true", help="intel_pstate: no frequency table")
    serve.add_argument("--no-rapl", action="store_true", help="no powercap/intel-rapl tree")
    serve.add_argument("--cgroup", choices=("v2", "v1", "none"), default="v2")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--trace", type=Path, help="append a CSV row per step to this file")
    serve.add_argument("--devices", choices=("all", "room"), default="all",
                       help="all: every sensor of a heater (serial ports, IIO, 1-Wire, GPIO, microphone); "
                            "room: only the board and the room temperature sensor")
    serve.add_argument("--no-noise", action="store_true", help="exact sensor values (integration tests)")
    serve.add_argument("--scenario", type=Path,
                       help="TOML file of timed faults: [[fault]] at_s, device, kind")
    rig = sub.add_parser("rig", help="hardware-in-the-loop rig: play a scenario, check its expectations")
    rig.add_argument("--root", type=Path, required=True, help="directory standing for /sys")
    rig.add_argument("--scenario", required=True,
                     help="scenario TOML file, or the name of one in qrad_hwsim/rigs (winter_day)")
    rig.add_argument("--report", type=Path, help="write the report here (JSON)")
    fault = sub.add_parser("fault", help="inject a fault into a running serve process")
    fault.add_argument("--root", type=Path, required=True)
    target = fault.add_mutually_exclusive_group(required=True)
    target.add_argument("--sensor", choices=SENSOR_FAULTS, help="room temperature sensor fault")
    target.add_argument("--device", help="device name (co2, pm, meter, board, surface, bme280, light, "
                                         "ds18b20, gpio, audio, room, heater)")
    fault.add_argument("--wait", type=float, default=5.0,
                       help="seconds to wait for the answer, at least two of the running simulator's steps "
                            "(0: queue it and return)")
    fault.add_argument("--kind", help="fault kind for --device (ok, unplugged, garbage, partial, "
                                      "bad_checksum, stuck, out_of_range, spike, drift, ...; heater: "
                                      "fan_failure, outlet_blocked; surface: detached, misplaced, "
                                      "sentinel, unplugged)")
    return parser


def heater_spec_from_args(args: argparse.Namespace) -> HeaterSpec:
    """HeaterSpec for the serve options."""
    board = BoardSpec(freq_list=not args.no_freq_list, rapl=not args.no_rapl,
                      cgroup=None if args.cgroup == "none" else args.cgroup)
    return HeaterSpec(board=board, initial_air_c=args.initial_air_c)


def _trace_writer(path: Path | None, stack: ExitStack) -> Callable[[HeaterState], None] | None:
    """An on_step callback appending CSV rows to ``path`` (header first if the file is new)."""
    if path is None:
        return None
    is_new = not path.exists() or path.stat().st_size == 0
    handle: TextIO = stack.enter_context(open(path, "a", newline="", encoding="utf-8"))
    writer = csv.writer(handle)
    if is_new:
        writer.writerow(TRACE_COLUMNS)
    handle.flush()

    def write_row(state: HeaterState) -> None:
        writer.writerow(_trace_row(state))
        handle.flush()  # a few rows a second at most: keep the file current for live plots

    return write_row


def _trace_row(state: HeaterState) -> list[object]:
    values = dict(zip((f.name for f in fields(state)), astuple(state), strict=True))
    return ["" if values[c] is None else values[c] for c in TRACE_COLUMNS]


async def serve(args: argparse.Namespace) -> int:
    """Run the simulator until SIGTERM/SIGINT; return the exit status."""
    weather = Weather.load(args.weather or default_weather_path())
    faults = load_scenario(args.scenario) if args.scenario else []
    sim = LiveSimulator(args.root, heater_spec_from_args(args), weather, parse_start(args.start), args.seed,
                        args.devices, noise=not args.no_noise, faults=faults)
    async with sim:
        stop = stop_on_signals()
        print(f"READY root={sim.root}", flush=True)
        with ExitStack() as stack:
            await sim.run(args.step, args.speed, stop, _trace_writer(args.trace, stack))
    return 0


ANSWER_STEPS = 2.0
"""A live simulator answers a fault at its next step: the wait covers this many of its steps ..."""
ANSWER_MARGIN_S = 2.0
"""... plus this margin (s), whatever --wait says, so a slow simulator's answer is still reported."""


def inject_device_fault(root: Path, device: str, kind: str | None, wait_s: float = 5.0) -> int:
    """Queue a device fault for a running serve (``<root>/.hwsim/faults.json``) and wait for its answer:
    0 applied (or already so), 2 refused (the reason printed), 69 no simulator running there or no answer.
    Each request carries an id the answer repeats, so a repeated request is answered too. The wait is
    at least two of the running simulator's steps (its live.json), so a slow one (speed 1: a step every
    10 s) is waited for. ``wait_s`` <= 0: queue it and return 0 without waiting (a simulator stepped by
    the caller)."""
    if not root.is_dir() or kind is None:
        print("qrad-hwsim: --device needs --kind and a running simulator's --root", file=sys.stderr)
        return 2
    outcomes = outcome_path(root)
    request_id = request_fault(root, device, kind)
    if wait_s <= 0:
        return 0
    live = live_simulator(root)
    if live is None:
        print(f"qrad-hwsim: no simulator is running under {root} (the fault stays queued for the next one)",
              file=sys.stderr)
        return 69
    wait_s = max(wait_s, ANSWER_STEPS * float(live.get("step_period_s", 0.0)) + ANSWER_MARGIN_S)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            answer = json.loads(outcomes.read_text()).get(device)
        except (OSError, ValueError, AttributeError):
            answer = None
        if isinstance(answer, dict) and answer.get("id") == request_id:  # this request's answer, not an older one
            if answer.get("ok"):
                print(f"{device}: {kind} {answer.get('detail', 'applied')}")
                return 0
            print(f"qrad-hwsim: fault {device}={kind} refused: {answer.get('detail')}", file=sys.stderr)
            return 2
        time.sleep(0.05)
    print(f"qrad-hwsim: the simulator under {root} (pid {live.get('pid')}) did not answer within {wait_s:g} s "
          "(the fault stays queued)", file=sys.stderr)
    return 69


def inject_fault(root: Path, sensor_fault: str) -> int:
    """Write the sensor fault control file of a running serve and say what was set and when it applies;
    return the exit status (0 written, 2 no simulator tree there)."""
    if not root.is_dir():
        print(f"qrad-hwsim: no simulator tree at {root}", file=sys.stderr)
        return 2
    path = sensor_fault_path(root)
    path.parent.mkdir(exist_ok=True)
    write_text_atomic(path, sensor_fault)
    live = live_simulator(root)
    if live is None:
        when = "no simulator is running there now (a new one starts without it)"
    else:
        when = (f"the simulator (pid {live.get('pid')}) applies it at its next step, within "
                f"{float(live.get('step_period_s', 0.0)):g} s")
    print(f"room sensor: {sensor_fault} ({path}); {when}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qrad-hwsim`` console script; a closed pipe ends it quietly (141)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fault":
        if args.device:
            return inject_device_fault(args.root, args.device, args.kind, args.wait)
        return inject_fault(args.root, args.sensor)
    try:
        if args.command == "rig":
            return asyncio.run(run_rig(args.root, args.scenario, args.report))
        parse_start(args.start)  # fail before building anything
        return asyncio.run(serve(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"qrad-hwsim: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
