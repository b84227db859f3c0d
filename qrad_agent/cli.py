"""The `qrad-agent` command line.

    qrad-agent run --config FILE        run the daemon (systemd starts it this way)
    qrad-agent config check FILE        validate a configuration file
    qrad-agent sim [--days 7] [...]     simulate a week against hw-sim and print the KPIs

Exit codes: 0 ok, 2 usage, 70 (EX_SOFTWARE) a component died, 78 (EX_CONFIG) bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import structlog

from qrad_agent.config import AgentConfig, load_config
from qrad_agent.errors import EX_CONFIG, EX_SOFTWARE, ComponentDied, ConfigError
from qrad_agent.log import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="qrad-agent", description="Node agent of a computing heater.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.add_argument("--json", action="store_true", help="print the effective configuration as JSON")
    sim = sub.add_parser("sim", help="simulate the heater and its room on real weather (virtual time)")
    sim.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    sim.add_argument("--start", default="01-01", help="start date, MM-DD or YYYY-MM-DD (default 01-01)")
    sim.add_argument("--algorithm", choices=["pid", "hysteresis"], default="pid")
    sim.add_argument("--plot", type=Path, help="draw temperatures and power into this PNG file")
    sim.add_argument("--json", action="store_true", help="print the KPIs as JSON")
    sim.add_argument("--seed", type=int, default=0, help="seed of the sensor noise")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(load_config(args.config))
        if args.command == "config":
            return cmd_config_check(args.file, args.json)
        return cmd_sim(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG


def cmd_config_check(path: Path, as_json: bool) -> int:
    """Validate ``path``; print the effective configuration or "ok". Raises ConfigError."""
    cfg = load_config(path)
    if as_json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(f"{path}: ok (device {cfg.device_id}, {len(cfg.sensors)} sensor(s), "
              f"thermostat {cfg.thermostat.algorithm})")
    return 0


def cmd_run(cfg: AgentConfig) -> int:
    """Run the daemon until SIGTERM/SIGINT (0) or until a component dies (70)."""
    setup_logging(cfg.device_id, cfg.logging.level, cfg.logging.format)
    log = structlog.get_logger(component="main")
    try:
        asyncio.run(_serve(cfg))
    except ComponentDied as exc:
        log.error("agent stopped: component died", component=exc.component, error=str(exc))
        return EX_SOFTWARE
    return 0


async def _serve(cfg: AgentConfig) -> None:
    from qrad_agent.agent import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await Agent(cfg).run(stop)


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the virtual-time simulation and print its KPI table (or JSON)."""
    from qrad_agent.kpi import format_table
    from qrad_agent.sim import plot, run_sim

    if args.days <= 0:
        print("--days must be > 0", file=sys.stderr)
        return 2
    try:
        result = run_sim(days=args.days, start=args.start, thermostat={"algorithm": args.algorithm},
                         seed=args.seed)
    except ValueError as exc:
        print(f"qrad-agent sim: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.kpis.as_dict(), indent=2))
    else:
        print(f"{args.algorithm} thermostat, {args.days:g} days from {result.start:%Y-%m-%d} "
              f"(Lyon-Bron typical year weather)")
        print(format_table({args.algorithm: result.kpis}))
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
