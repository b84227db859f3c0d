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
import signal
import sys
import time
from pathlib import Path

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
    selftest = sub.add_parser("selftest", help="check every sensor, actuator, the loop timing, clock, disk")
    _add_socket_args(selftest)
    logs = sub.add_parser("logs", help="the agent's recent structured log")
    _add_socket_args(logs)
    logs.add_argument("--component", help="only this component (power, thermostat, sensors, safety ...)")
    logs.add_argument("--level", choices=["debug", "info", "warning", "error"], help="this level or above")
    logs.add_argument("--limit", type=int, default=50)
    override = sub.add_parser("override", help="hold a setpoint instead of the schedule (privileged)")
    _add_socket_args(override)
    override.add_argument("setpoint_c", nargs="?", type=float, help="°C; omit with --clear")
    override.add_argument("--hours", type=float, help="for this long (default: until cleared)")
    override.add_argument("--clear", action="store_true", help="back to the schedule")
    jobs = sub.add_parser("jobs", help="sandboxed compute jobs: list, show, submit, cancel")
    jobs.add_argument("--config", type=Path, required=True, help="the agent's config file")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_list = jobs_sub.add_parser("list", help="every job and its status")
    jobs_list.add_argument("--json", action="store_true")
    jobs_show = jobs_sub.add_parser("show", help="one job's record")
    jobs_show.add_argument("job_id")
    jobs_show.add_argument("--json", action="store_true")
    jobs_submit = jobs_sub.add_parser("submit", help="submit a local job bundle (technicians' tests)")
    jobs_submit.add_argument("bundle", type=Path)
    jobs_submit.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S s for the end")
    jobs_submit.add_argument("--json", action="store_true")
    jobs_cancel = jobs_sub.add_parser("cancel", help="cancel a job (checkpointable jobs get their grace)")
    jobs_cancel.add_argument("job_id")
    jobs_cancel.add_argument("--json", action="store_true")
    tune = sub.add_parser("autotune", help="identify the room and propose PID gains (privileged)")
    _add_socket_args(tune)
    tune_mode = tune.add_mutually_exclusive_group()
    tune_mode.add_argument("--dry-run", action="store_true", help="show the step-test plan only")
    tune_mode.add_argument("--status", action="store_true", help="progress, and the proposed gains")
    tune_mode.add_argument("--confirm", action="store_true", help="apply and save the proposed gains")
    ident = sub.add_parser("identify", help="blink the front LED so the heater can be found (privileged)")
    _add_socket_args(ident)
    ident.add_argument("--count", type=int, default=10)
    firetest = sub.add_parser("fire-test", help="drive the alarm path in test mode (privileged)")
    _add_socket_args(firetest)
    firetest.add_argument("--seconds", type=float, default=5.0)
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
    return parser


def _add_socket_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="the agent's config file (to find its API socket)")
    where.add_argument("--socket", type=Path, help="the agent's API socket")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return args.socket
    if args.config:
        return load_config(args.config).api.socket_path
    return ApiConfig().socket_path


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            set_agent_umask()  # before anything is created: state, outbox, replay db are the agent's own
            return cmd_run(check_identity(load_config(args.config, strict_env=True), args.config), args.config)
        if args.command == "floor":
            from qrad_agent.ops.floor import cmd_floor

            return cmd_floor(load_config(args.config))
        if args.command == "launcher":
            set_agent_umask()
            return cmd_launcher(load_config(args.config), args.allow_uid)
        if args.command == "config":
            return cmd_config_check(args.file, args.json)
        if args.command == "sensors":
            return cmd_sensors(args)
        if args.command in ("status", "power", "selftest", "logs", "override", "autotune", "identify",
                            "fire-test", "reset-alarm"):
            return cmd_api(args)
        if args.command in fleet_cli.COMMANDS:
            return fleet_cli.main(args)
        if args.command == "jobs":
            from qrad_agent.jobs import cli as jobs_cli

            handler = getattr(jobs_cli, f"cmd_{args.jobs_command}")
            return handler(args, load_config(args.config).jobs)
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


def cmd_config_check(path: Path, as_json: bool) -> int:
    """Validate ``path``; print the effective configuration or "ok". Raises ConfigError."""
    cfg = check_identity(load_config(path, strict_env=True), path)
    if as_json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(f"{path}: ok (device {cfg.device_id}, {len(cfg.sensors)} sensor(s), "
              f"thermostat {cfg.thermostat.algorithm})")
    return 0


def cmd_sensors(args: argparse.Namespace) -> int:
    """Print the agent's channels once, or every ``--watch`` seconds. 69 if the agent is unreachable."""
    from qrad_agent.api.client import AgentUnreachable, RequestFailed, call
    from qrad_agent.api.views import sensors_table

    path = _socket_path(args)
    while True:
        try:
            status = call(path, "sensors")
        except AgentUnreachable as exc:
            print(f"qrad-agent: agent unreachable: {exc}", file=sys.stderr)
            return EX_UNAVAILABLE
        except RequestFailed as exc:
            print(f"qrad-agent: {exc}", file=sys.stderr)
            return 1
        text = json.dumps(json_safe(status), indent=2) if args.json else sensors_table(status)
        if args.watch is None:
            print(text)
            return 0
        print("\033[H\033[J" + text if sys.stdout.isatty() else text, flush=True)
        try:
            time.sleep(args.watch)  # the CLI process, not the agent: a plain wait between refreshes
        except KeyboardInterrupt:
            return 0


def cmd_api(args: argparse.Namespace) -> int:
    """One local API request and its output; exit 0, 1 (failure found / refused), 2 (usage), 69."""
    from qrad_agent.api.client import AgentUnreachable, RequestFailed, call
    from qrad_agent.api.views import logs_table, status_table
    from qrad_agent.ops.explain import explain_table
    from qrad_agent.ops.selftest import as_table

    if args.command in ("identify", "fire-test", "reset-alarm"):
        method, params = {
            "identify": ("identify", {"count": getattr(args, "count", 10)}),
            "fire-test": ("fire_test", {"seconds": getattr(args, "seconds", 5.0),
                                        "cut_power": getattr(args, "cut_power", False)}),
            "reset-alarm": ("reset_alarm", {"code": getattr(args, "code", "fire_alarm")}),
        }[args.command]
        render = _pretty
    elif args.command == "autotune":
        method = "autotune_status" if args.status else "autotune"
        params = {"dry_run": args.dry_run, "confirm": args.confirm}
        render = _pretty
    elif args.command == "override":
        if args.clear == (args.setpoint_c is not None):
            print("qrad-agent override: give a setpoint in °C, or --clear", file=sys.stderr)
            return 2
        method, params = ("clear_override", {}) if args.clear else (
            "set_override", {"setpoint_c": args.setpoint_c,
                             "duration_s": None if args.hours is None else args.hours * 3600})
        render = _override_view
    else:
        method, params, render = {
            "status": ("status", {}, status_table),
            "power": ("power_explain", {}, explain_table),
            "selftest": ("selftest", {}, as_table),
            "logs": ("logs", {"component": getattr(args, "component", None),
                              "level": getattr(args, "level", None), "limit": getattr(args, "limit", 50)},
                     logs_table),
        }[args.command]
    try:
        result = call(_socket_path(args), method, params)
    except AgentUnreachable as exc:
        print(f"qrad-agent: agent unreachable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except RequestFailed as exc:
        print(f"qrad-agent: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(json_safe(result), indent=2, default=str) if args.json else render(result))
    return 1 if args.command == "selftest" and not result["ok"] else 0


def json_safe(value: object) -> object:
    """``value`` with NaN and infinities as null, so the output is strict JSON (RFC 8259 has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _override_view(status: dict) -> str:
    override = status.get("override_c")
    if override is None:
        return f"override cleared: back to mode {status.get('mode')} from the next control step"
    return f"override: holding {override:.1f} °C from the next control step"


def _pretty(result: object) -> str:
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    return str(result)


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
    log.info("launcher ready", socket=str(cfg.jobs.launcher_socket))
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
    agent.config_path = config_path
    agent.loopwatch = LoopWatch()
    await agent.run(stop)


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the virtual-time simulation and print its KPI table (or JSON: parameters and KPIs).

    Exit 2 for a bad argument (days, start, weather file, plot path: all checked before the run),
    1 if the plot cannot be written after the run, 130 when interrupted (Ctrl-C). A progress bar is drawn
    on stderr when it is a terminal.
    """
    from qrad_agent.kpi import format_table
    from qrad_agent.progress import ProgressBar
    from qrad_agent.sim import check_plot_path, plot, run_sim

    if not (args.days > 0 and math.isfinite(args.days)):
        print(f"qrad-agent sim: --days must be a number > 0, not {args.days:g}", file=sys.stderr)
        return 2
    try:
        if args.plot:
            check_plot_path(args.plot)
        bar = ProgressBar(sys.stderr, f"simulating {args.days:g} day(s)")
        try:
            result = run_sim(days=args.days, start=args.start, thermostat={"algorithm": args.algorithm},
                             seed=args.seed, weather_file=args.weather, progress=bar.update)
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
        print(json.dumps(json_safe(report), indent=2))
    else:
        print(f"{p.algorithm} thermostat, {p.days:g} days from {p.start:%a %Y-%m-%d}, "
              f"weather {p.weather_file}, seed {p.seed}")
        print(format_table({p.algorithm: result.kpis}))
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
