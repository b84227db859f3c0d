"""The `qrad-agent` command line.

    qrad-agent run --config FILE        run the daemon (systemd starts it this way)
    qrad-agent config check FILE        validate a configuration file
    qrad-agent sim [--days 7] [...]     simulate a week against hw-sim and print the KPIs
    qrad-agent sensors [--watch] [--json]   live channel table from the running agent (local API)

Exit codes: 0 ok, 1 failure found, 2 usage, 69 (EX_UNAVAILABLE) agent unreachable, 70 (EX_SOFTWARE) a
component died, 78 (EX_CONFIG) bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import select
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from qrad_agent import fleet_cli
from qrad_agent.config import AgentConfig, ApiConfig, load_config
from qrad_agent.errors import EX_CONFIG, EX_SOFTWARE, EX_UNAVAILABLE, AgentError, ComponentDied, ConfigError
from qrad_agent.files import set_agent_umask
from qrad_agent.log import make_stderr_nonblocking, protect_stderr, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="qrad-agent", description="Node agent of a computing heater.")
    parser.add_argument("--version", action="version", version=fleet_cli.version())
    sub = parser.add_subparsers(dest="command", required=True)
    fleet_cli.add_parsers(sub)  # update, supervise, factory-reset
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    floor = sub.add_parser("floor", help="compute power to its floor without the agent (the unit's ExecStopPost)")
    floor.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    floor.add_argument("--force", action="store_true", help="write the floor even while the agent runs")
    launcher = sub.add_parser("launcher", help="run the privileged job launcher service (jobs.launcher_socket)")
    launcher.add_argument("--config", type=Path, required=True, help="the agent's TOML configuration file")
    launcher.add_argument("--allow-uid", type=int, action="append", default=None,
                          help="uid allowed to use the launcher (repeatable; default 0)")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.add_argument("--json", action="store_true", help="print the effective configuration as JSON")
    sensors = sub.add_parser("sensors", help="live table of every channel, from the running agent")
    _add_socket_args(sensors)
    sensors.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="S",
                         help="refresh every S seconds (default 2) until interrupted")
    status = sub.add_parser("status", help="mode, setpoint, room, power and why, alarms, sync, jobs")
    _add_socket_args(status)
    power = sub.add_parser("power", help="power actuation tools")
    power_sub = power.add_subparsers(dest="power_command", required=True)
    explain = power_sub.add_parser("explain", help="setpoint -> demand -> P-states/RAPL/quota, read back")
    _add_socket_args(explain)
    _add_socket_args(power)
    selftest = sub.add_parser("selftest", help="check every sensor, actuator, the loop timing, clock, disk")
    _add_socket_args(selftest)
    logs = sub.add_parser("logs", help="the agent's recent structured log")
    _add_socket_args(logs)
    logs.add_argument("--component", help="only this component (power, thermostat, sensors, safety ...)")
    logs.add_argument("--level", choices=["debug", "info", "warning", "error"], help="this level or above")
    logs.add_argument("--limit", type=_positive_int, default=50, help="at most this many events (default 50)")
    logs.add_argument("--since", type=_age_s, metavar="AGE",
                      help="only events of the last AGE: 90s, 10m, 2h, 1d (a plain number is seconds)")
    logs.add_argument("-f", "--follow", action="store_true", help="then print new events as they come")
    override = sub.add_parser("override", help="hold a setpoint instead of the schedule (privileged)")
    _add_socket_args(override)
    override.add_argument("setpoint_c", nargs="?", type=float, help="°C; omit with --clear")
    override.add_argument("--hours", type=float, help="for this long, > 0 (default: until cleared)")
    override.add_argument("--clear", action="store_true", help="back to the schedule")
    mode = sub.add_parser("mode", help="set the thermostat's mode: auto follows the schedule (privileged)")
    _add_socket_args(mode)
    mode.add_argument("mode", choices=["auto", "comfort", "eco", "frost", "off"])
    setpoint = sub.add_parser("setpoint", help="set a schedule mode's setpoint (privileged)")
    _add_socket_args(setpoint)
    setpoint.add_argument("mode", choices=["comfort", "eco", "frost"])
    setpoint.add_argument("setpoint_c", type=float, help="°C; comfort >= eco >= frost")
    schedule = sub.add_parser("schedule", help="replace the weekly schedule from a TOML file of [[rule]] "
                                               "tables (days, start, mode), as in the config (privileged)")
    _add_socket_args(schedule)
    schedule.add_argument("file", type=Path)
    jobs = sub.add_parser("jobs", help="sandboxed compute jobs: list, show, submit, cancel")
    _add_config_arg(jobs)
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = jobs_sub.add_parser("list", help="every job and its status")
    jobs_show = jobs_sub.add_parser("show", help="one job's record")
    jobs_show.add_argument("job_id")
    jobs_submit = jobs_sub.add_parser("submit", help="submit a local job bundle (technicians' tests)")
    jobs_submit.add_argument("bundle", type=Path)
    jobs_submit.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S s for the end")
    jobs_cancel = jobs_sub.add_parser("cancel", help="cancel a job (checkpointable jobs get their grace)")
    jobs_cancel.add_argument("job_id")
    for leaf in (jobs_list, jobs_show, jobs_submit, jobs_cancel):
        _add_config_arg(leaf)
        leaf.add_argument("--json", action="store_true", help="machine-readable output")
    tune = sub.add_parser("autotune", help="identify the room and propose PID gains (privileged)")
    _add_socket_args(tune)
    tune_mode = tune.add_mutually_exclusive_group()
    tune_mode.add_argument("--dry-run", action="store_true", help="show the step-test plan only")
    tune_mode.add_argument("--status", action="store_true", help="progress, and the proposed gains")
    tune_mode.add_argument("--confirm", action="store_true", help="apply and save the proposed gains")
    tune_mode.add_argument("--cancel", action="store_true", help="stop the running test; the thermostat takes over")
    ident = sub.add_parser("identify", help="blink the front LED so the heater can be found (privileged)")
    _add_socket_args(ident)
    ident.add_argument("--count", type=int, default=10)
    firetest = sub.add_parser("fire-test", help="drive the alarm path in test mode (privileged)")
    _add_socket_args(firetest)
    firetest.add_argument("--seconds", type=float, default=5.0, help="length of the test, (0, 300] s")
    firetest.add_argument("--cut-power", action="store_true", help="also hold compute power at minimum")
    reset = sub.add_parser("reset-alarm", help="reset a latched alarm after inspection (privileged)")
    _add_socket_args(reset)
    reset.add_argument("code", nargs="?", default="fire_alarm")
    sim = sub.add_parser("sim", help="simulate the heater and its room on real weather (virtual time)")
    sim.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    sim.add_argument("--start", default="01-01", help="start date, MM-DD or YYYY-MM-DD (default 01-01)")
    sim.add_argument("--algorithm", choices=["pid", "hysteresis"], default="pid")
    sim.add_argument("--plot", type=Path, help="draw temperatures and power into this PNG file")
    sim.add_argument("--json", action="store_true", help="print the run's parameters and KPIs as JSON")
    sim.add_argument("--seed", type=int, default=0, help="seed of the sensor noise")
    sim.add_argument("--weather", type=Path,
                     help="weather file: an EPW file or the TMYx hourly CSV "
                          "(default: $QRAD_WEATHER_FILE, else the Lyon-Bron year shipped with hw-sim)")
    sim.add_argument("--predict", action="store_true", help=argparse.SUPPRESS)  # the default; kept for scripts
    sim.add_argument("--no-predict", action="store_true",
                     help="without predictive heating (optimal start/stop, on by default)")
    sim.add_argument("--warmup-days", type=float, default=0.0,
                     help="simulate this long before --start, unscored (the room model learns there)")
    sim.add_argument("--forecast-error", type=float, default=0.0, metavar="K",
                     help="RMS error (K) at 24 h of the weather forecast sent to the agent (default 0)")
    sim.add_argument("--dr-event", metavar="YYYY-MM-DD HH:MM", help="a demand-response request from the "
                     "platform: shed from this local time (--dr-hours long, at most --dr-limit-w)")
    sim.add_argument("--dr-hours", type=float, help="length of the demand-response window (h, default 2)")
    sim.add_argument("--dr-limit-w", type=float, help="power limit in the window (W, default 50)")
    return parser


def _add_socket_args(parser: argparse.ArgumentParser) -> None:
    """--config / --socket / --json on a (sub)command; SUPPRESS defaults, so a subcommand's parser does not
    overwrite what its parent parsed (`power --config F explain` and `power explain --config F` both work)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                       help="the agent's config file (to find its API socket)")
    where.add_argument("--socket", type=Path, default=argparse.SUPPRESS, help="the agent's API socket")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="the agent's config file")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


AGE_UNITS_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _age_s(text: str) -> float:
    """"90s", "10m", "2h", "1d" or a plain number of seconds -> seconds (> 0)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90s, 10m, 2h or 1d")
    value = float(match.group(1)) * AGE_UNITS_S[match.group(2) or "s"]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the age must be > 0")
    return value


def _socket_path(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return args.socket
    if getattr(args, "config", None):
        return load_config(args.config).api.socket_path
    return ApiConfig().socket_path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status. A closed pipe (``| head``) ends the
    command quietly with 141 (128 + SIGPIPE, what a shell reports for a tool killed by it)."""
    try:
        return _main(argv)
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:  # Ctrl-C ends `sensors --watch` and `logs --follow` normally
        watching = argv_has(argv, "--watch", "--follow", "-f")
        return 0 if watching else 130


def argv_has(argv: list[str] | None, *options: str) -> bool:
    """Whether the command line (``argv`` or the process's) names one of ``options``."""
    return any(arg in options or arg.split("=", 1)[0] in options for arg in (sys.argv[1:] if argv is None else argv))


def quiet_broken_pipe() -> int:
    """After EPIPE on stdout: point stdout at /dev/null so the interpreter's final flush cannot fail again
    (it would print "Exception ignored ... BrokenPipeError"); returns 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        if args.command == "run":
            set_agent_umask()  # before anything is created: state, outbox, replay db are the agent's own
            return cmd_run(check_identity(load_config(args.config, strict_env=True), args.config), args.config)
        if args.command == "floor":
            from qrad_agent.ops.floor import cmd_floor

            return cmd_floor(load_config(args.config), args.force)
        if args.command == "launcher":
            set_agent_umask()
            return cmd_launcher(load_config(args.config), args.allow_uid)
        if args.command == "config":
            return cmd_config_check(args.file, args.json)
        if args.command == "sensors":
            return cmd_sensors(args)
        if args.command in ("status", "power", "selftest", "logs", "override", "autotune", "identify",
                            "fire-test", "reset-alarm", "mode", "setpoint", "schedule"):
            return cmd_api(args)
        if args.command in fleet_cli.COMMANDS:
            return fleet_cli.main(args)
        if args.command == "jobs":
            return cmd_jobs(args)
        return cmd_sim(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG


def check_identity(cfg: AgentConfig, path: Path) -> AgentConfig:
    """``cfg`` if its sync client certificate's CN is its device id and its private key is not readable by
    other users (or there is no certificate); else ConfigError on ``sync.cert_file`` / ``sync.key_file``."""
    if cfg.sync is None or not cfg.sync.tls or cfg.sync.cert_file is None:
        return cfg
    from qrad_agent.sync.provision import ProvisionError, check_certificate_identity, check_key_mode

    problems = []
    try:
        check_certificate_identity(cfg.sync.cert_file, cfg.device_id)
    except ProvisionError as exc:
        problems.append(("sync.cert_file", str(exc)))
    if cfg.sync.key_file is not None:
        try:
            check_key_mode(cfg.sync.key_file)
        except ProvisionError as exc:
            problems.append(("sync.key_file", str(exc)))
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


def cmd_jobs(args: argparse.Namespace) -> int:
    """`jobs list|show|submit|cancel` (qrad_agent/jobs/cli.py); 2 without --config, 78 a bad config, and a
    notice with exit 69 when jobs are disabled in that config."""
    from qrad_agent.jobs import cli as jobs_cli

    if getattr(args, "config", None) is None:
        print(f"qrad-agent jobs {args.jobs_command}: --config FILE is required (before or after "
              f"{args.jobs_command})", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    if not cfg.jobs.enabled:
        print(f"qrad-agent jobs: jobs are disabled on this heater ([jobs] enabled = false in {args.config})",
              file=sys.stderr)
        return EX_UNAVAILABLE
    handler = getattr(jobs_cli, f"cmd_{args.jobs_command}")
    return handler(args, cfg.jobs)


def cmd_config_check(path: Path, as_json: bool) -> int:
    """Validate ``path``; print the effective configuration or "ok"; 78 with every problem (as JSON on
    stdout with ``--json``: {"ok": false, "file", "problems": [{"path", "reason"}]})."""
    try:
        cfg = check_identity(load_config(path, strict_env=True), path)
    except ConfigError as exc:
        if not as_json:
            raise
        print(json.dumps({"ok": False, "file": str(path),
                          "problems": [{"path": p, "reason": r} for p, r in exc.problems]}, indent=2))
        return EX_CONFIG
    if as_json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(f"{path}: ok (device {cfg.device_id}, {len(cfg.sensors)} sensor(s), "
              f"thermostat {cfg.thermostat.algorithm})")
    return 0


def cmd_sensors(args: argparse.Namespace) -> int:
    """Print the agent's channels once, or every ``--watch`` seconds. 69 if the agent is unreachable."""
    from qrad_agent.api.views import sensors_table

    if args.watch is not None and not args.watch > 0:
        print("qrad-agent sensors: --watch needs a period > 0 s", file=sys.stderr)
        return 2
    path = _socket_path(args)
    while True:
        status = _request(path, "sensors")
        if isinstance(status, int):
            return status
        text = json.dumps(json_safe(status), indent=2) if args.json else sensors_table(status)
        if args.watch is None:
            print(text)
            return 0
        print("\033[H\033[J" + text if sys.stdout.isatty() else text, flush=True)
        if stdout_closed(args.watch):  # the wait between refreshes, cut short when the reader has gone
            return quiet_broken_pipe()


def _request(path: Path, method: str, params: dict | None = None) -> Any:
    """The agent's answer, or the exit status after printing why there is none: 69 unreachable, 2 a
    request the agent calls wrong (usage), 1 refused."""
    from qrad_agent.api.client import AgentUnreachable, RequestFailed, call

    try:
        return call(path, method, params)
    except AgentUnreachable as exc:
        print(f"qrad-agent: agent unreachable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except RequestFailed as exc:
        print(f"qrad-agent: {exc}", file=sys.stderr)
        return 2 if exc.usage else 1


def cmd_api(args: argparse.Namespace) -> int:
    """One local API request and its output; exit 0, 1 (failure found / refused), 2 (usage), 69."""
    from qrad_agent.api import views
    from qrad_agent.ops.explain import explain_table
    from qrad_agent.ops.selftest import as_table

    if args.command == "override":
        if args.clear == (args.setpoint_c is not None):
            print("qrad-agent override: give a setpoint in °C, or --clear (not both)", file=sys.stderr)
            return 2
        if args.clear and args.hours is not None:
            print("qrad-agent override: --clear takes no --hours", file=sys.stderr)
            return 2
        if args.hours is not None and not (math.isfinite(args.hours) and args.hours > 0):
            print(f"qrad-agent override: --hours must be > 0 (got {args.hours:g}); omit it to hold until "
                  "cleared", file=sys.stderr)
            return 2
    if args.command == "schedule":
        try:
            args.rules = tomllib.loads(args.file.read_text()).get("rule")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            print(f"qrad-agent schedule: {args.file}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(args.rules, list) or not args.rules:
            print(f"qrad-agent schedule: {args.file} has no [[rule]] tables (days, start, mode)", file=sys.stderr)
            return 2
    if args.command == "fire-test" and not 0 < args.seconds <= 300:
        print("qrad-agent fire-test: --seconds must be in (0, 300]", file=sys.stderr)
        return 2
    if args.command == "identify" and not 1 <= args.count <= 600:
        print("qrad-agent identify: --count must be 1..600", file=sys.stderr)
        return 2
    path = _socket_path(args)
    if args.command == "logs" and args.follow:
        return _follow_logs(path, args)
    method, params, render = _api_call(args)
    result = _request(path, method, params)
    if isinstance(result, int):
        return result
    if args.command == "fire-test":
        result = _wait_fire_test(path, args.seconds)
        if isinstance(result, int):
            return result
    renderers: dict[str, Callable[[Any], str]] = {
        "status": views.status_table, "power": explain_table, "selftest": as_table, "logs": views.logs_table,
        "override": views.override_view, "autotune": views.autotune_view, "identify": views.identify_view,
        "fire-test": views.fire_test_view, "reset-alarm": views.safety_view, "mode": views.thermostat_view,
        "setpoint": views.thermostat_view, "schedule": views.thermostat_view}
    print(json.dumps(json_safe(result), indent=2, default=str) if args.json else renderers[render](result))
    if args.command in ("selftest", "fire-test"):
        return 0 if result.get("ok") else 1
    return 0


def _api_call(args: argparse.Namespace) -> tuple[str, dict, str]:
    """(method, params, renderer name) of a technician command."""
    command = args.command
    if command == "override":
        if args.clear:
            return "clear_override", {}, command
        return ("set_override", {"setpoint_c": args.setpoint_c,
                                 "duration_s": None if args.hours is None else args.hours * 3600}, command)
    if command == "autotune":
        if args.status:
            return "autotune_status", {}, command
        return "autotune", {"dry_run": args.dry_run, "confirm": args.confirm, "cancel": args.cancel}, command
    if command == "logs":
        return "logs", {"component": args.component, "level": args.level, "limit": args.limit,
                        "since_s": args.since}, command
    if command == "identify":
        return "identify", {"count": args.count}, command
    if command == "fire-test":
        return "fire_test", {"seconds": args.seconds, "cut_power": args.cut_power}, command
    if command == "reset-alarm":
        return "reset_alarm", {"code": args.code}, command
    if command == "mode":
        return "set_mode", {"mode": args.mode}, command
    if command == "setpoint":
        return "set_setpoint", {"mode": args.mode, "setpoint_c": args.setpoint_c}, command
    if command == "schedule":
        return "set_schedule", {"rules": args.rules}, command
    return {"status": "status", "power": "power_explain", "selftest": "selftest"}[command], {}, command


FIRE_TEST_MARGIN_S = 10.0
"""How long past its own length the CLI waits for a fire test's result."""
POLL_S = 0.2


def _wait_fire_test(path: Path, seconds: float) -> Any:
    """Poll the agent until the fire test it started is over; its result, or an exit status."""
    deadline = time.monotonic() + seconds + FIRE_TEST_MARGIN_S
    if sys.stderr.isatty():
        print(f"fire test running for {seconds:g} s ...", file=sys.stderr)
    while True:
        result = _request(path, "fire_test_status")
        if isinstance(result, int) or not result.get("running"):
            return result
        if time.monotonic() > deadline:
            print(f"qrad-agent fire-test: no result {seconds + FIRE_TEST_MARGIN_S:g} s after the start",
                  file=sys.stderr)
            return 1
        time.sleep(POLL_S)


FOLLOW_POLL_S = 1.0


def _follow_logs(path: Path, args: argparse.Namespace) -> int:
    """`logs --follow`: the recent events, then every new one (polled each second) until interrupted."""
    from qrad_agent.api.views import logs_table

    params = {"component": args.component, "level": args.level, "limit": args.limit, "since_s": args.since}
    after = 0
    while True:
        events = _request(path, "logs", {**params, "after_seq": after})
        if isinstance(events, int):
            return events
        assert isinstance(events, list)
        for event in events:
            print(json.dumps(json_safe(event), default=str) if args.json else logs_table([event]), flush=True)
        if events:
            after = int(events[-1]["seq"])
        params["limit"], params["since_s"] = 1000, None
        if stdout_closed(FOLLOW_POLL_S):  # as tail -f: a reader gone ends it without waiting for a write
            return quiet_broken_pipe()


def stdout_closed(timeout_s: float) -> bool:
    """Wait up to ``timeout_s``; True as soon as standard output is a pipe whose reader has gone (poll(2)
    reports POLLERR on such a pipe's write end), False after the wait otherwise."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # no event asked: only POLLERR / POLLHUP / POLLNVAL come
    except (OSError, ValueError, AttributeError):
        time.sleep(timeout_s)
        return False
    events = poller.poll(timeout_s * 1000)
    closed = any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)
    if events and not closed:  # e.g. POLLNVAL: no way to tell, a plain wait
        time.sleep(timeout_s)
    return closed


def json_safe(value: object) -> object:
    """``value`` with NaN and infinities as null, so the output is strict JSON (RFC 8259 has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def cmd_run(cfg: AgentConfig, config_path: Path | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (0), until a component dies (70), or 69 when a component cannot
    start here (jobs without bubblewrap or an unreachable launcher, missing actuators): systemd retries.

    A log reader that is gone or stalled, or a full disk under the log, never stops or slows the daemon."""
    make_stderr_nonblocking()
    protect_stderr()
    setup_logging(cfg.device_id, cfg.logging.level, cfg.logging.format)
    log = structlog.get_logger(component="main")
    try:
        asyncio.run(_serve(cfg, config_path))
    except ComponentDied as exc:
        log.error("agent stopped: component died", component=exc.component, error=str(exc))
        return EX_SOFTWARE
    except AgentError as exc:
        log.error("agent cannot start", error=str(exc), kind=type(exc).__name__)
        return EX_UNAVAILABLE
    return 0


def cmd_launcher(cfg: AgentConfig, allow_uids: list[int] | None) -> int:
    """Serve the jobs' privileged operations on ``jobs.launcher_socket`` until SIGTERM (0); 78 without one."""
    import threading

    from qrad_agent.jobs.launcher import Launcher, LauncherServer
    from qrad_agent.jobs.sandbox import SandboxError
    from qrad_agent.sdnotify import Notifier

    setup_logging(cfg.device_id, cfg.logging.level, cfg.logging.format)
    log = structlog.get_logger(component="launcher")
    if cfg.jobs.launcher_socket is None:
        print("jobs.launcher_socket is not set in the configuration", file=sys.stderr)
        return EX_CONFIG
    launcher = Launcher(cfg.jobs)
    try:
        launcher.setup()
    except (SandboxError, OSError) as exc:
        log.error("launcher cannot start sandboxes", error=str(exc))
        return EX_UNAVAILABLE
    server = LauncherServer(launcher, cfg.jobs.launcher_socket, set(allow_uids) if allow_uids else None)
    server.bind()
    stopped = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stopped.set()
        threading.Thread(target=server.close, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    Notifier().notify("READY=1")
    log.info("launcher ready", socket=str(cfg.jobs.launcher_socket), disk_limits=launcher.disk_limits)
    server.serve_forever()
    server.close()  # idempotent: the signal handler's close may not have finished
    log.info("launcher stopped")
    return 0


async def _serve(cfg: AgentConfig, config_path: Path | None = None) -> None:
    from qrad_agent.agent import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    from qrad_agent.loopwatch import LoopWatch

    agent = Agent(cfg)
    agent.run_info.config_path = config_path
    agent.loopwatch = LoopWatch()
    agent.periodic_selftest.enabled = True
    await agent.run(stop)


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the virtual-time simulation and print its KPI table (or JSON: parameters and KPIs).

    Exit 2 for a bad argument (days, start, weather file, plot path: all checked before the run),
    1 if the plot cannot be written after the run, 130 when interrupted (Ctrl-C). A progress bar is drawn
    on stderr when it is a terminal.
    """
    from qrad_agent.kpi import format_table
    from qrad_agent.progress import ProgressBar
    from qrad_agent.sim import check_plot_path, forecast_errors, plot, run_sim

    if not (args.days > 0 and math.isfinite(args.days)):
        print(f"qrad-agent sim: --days must be a number > 0, not {args.days:g}", file=sys.stderr)
        return 2
    for flag, value in (("--warmup-days", args.warmup_days), ("--forecast-error", args.forecast_error)):
        if not (value >= 0 and math.isfinite(value)):
            print(f"qrad-agent sim: {flag} must be a number >= 0, not {value:g}", file=sys.stderr)
            return 2
    try:
        if args.plot:
            check_plot_path(args.plot)
        dr_event = None
        if not args.dr_event and (args.dr_hours is not None or args.dr_limit_w is not None):
            raise ValueError("--dr-hours and --dr-limit-w shape a --dr-event; give one")
        if args.dr_event:
            import datetime as _dt

            from qrad_agent.sim_forecast import DrEvent

            try:
                when = _dt.datetime.strptime(args.dr_event, "%Y-%m-%d %H:%M")
            except ValueError as exc:
                raise ValueError(f"--dr-event must be YYYY-MM-DD HH:MM, not {args.dr_event!r}") from exc
            given = {"hours": args.dr_hours, "limit_w": args.dr_limit_w}
            dr_event = DrEvent(when, **{k: v for k, v in given.items() if v is not None})  # else its defaults
            if not (0 < dr_event.hours < math.inf and 0 <= dr_event.limit_w < math.inf):
                raise ValueError("--dr-hours must be > 0 and --dr-limit-w >= 0")
        bar = ProgressBar(sys.stderr, f"simulating {args.days:g} day(s)")
        try:
            predict = {"enabled": not args.no_predict}
            result = run_sim(days=args.days, start=args.start,
                             thermostat={"algorithm": args.algorithm, "predict": predict},
                             seed=args.seed, weather_file=args.weather, progress=bar.update,
                             warmup_days=args.warmup_days, forecast_error_k=args.forecast_error,
                             dr_event=dr_event)
        finally:
            bar.close()
    except (ValueError, FileNotFoundError) as exc:
        print(f"qrad-agent sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qrad-agent sim: interrupted; no KPIs", file=sys.stderr)
        return 130
    p = result.parameters
    if args.json:
        report = {"parameters": p.as_dict(), "kpis": result.kpis.as_dict()}
        if result.demand_response:
            report["demand_response"] = result.demand_response
        ours, persistence, scored = forecast_errors(result)
        report["demand_forecast"] = {"mae_w": ours, "persistence_mae_w": persistence, "forecasts": scored}
        print(json.dumps(json_safe(report), indent=2))
    else:
        name = p.algorithm + ("+predict" if p.predict else "")
        print(f"{name} thermostat, {p.days:g} days from {p.start:%a %Y-%m-%d}, "
              f"weather {p.weather_file}, seed {p.seed}")
        print(format_table({name: result.kpis}))
        ours, persistence, scored = forecast_errors(result)
        if scored:
            print(f"demand forecast: MAE of hourly means over 24 h {ours:.1f} W, persistence {persistence:.1f} W "
                  f"({scored} forecasts)")
        if result.demand_response:
            print(f"demand response: {json.dumps(json_safe(result.demand_response))}")
    if args.plot:
        try:
            plot(result, args.plot)
        except (OSError, ValueError) as exc:
            print(f"qrad-agent sim: plot not written: {exc}", file=sys.stderr)
            return 1
        print(f"plot written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
