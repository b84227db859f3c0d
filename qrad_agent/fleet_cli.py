"""Fleet lifecycle commands of `qrad-agent`, registered by cli.py:

    qrad-agent --version                         the installed version
    qrad-agent update --config F --file BUNDLE   apply a signed update bundle (directory or tar)
    qrad-agent update --config F --sha256 D      fetch it from the platform's bundle store (mutual TLS)
    qrad-agent update --config F --recover       undo what an interrupted update left (before each start)
    qrad-agent update --config F --status        installed versions and the update history
    qrad-agent supervise --config F              the systemd unit's stand-in where there is no systemd
    qrad-agent factory-reset --config F [--yes] [--identity]   erase the owner's data (privileged)

Exit codes: 0 done, 1 refused or rolled back, 2 usage, 75 (EX_TEMPFAIL) another update is running,
77 (EX_NOPERM) not privileged, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import qrad_agent
from qrad_agent.config import load_config

COMMANDS = ("update", "supervise", "factory-reset")
EX_TEMPFAIL = 75
EX_NOPERM = 77


def version() -> str:
    """``qrad-agent X.Y.Z`` with the interpreter's prefix (which release's venv runs it)."""
    return f"qrad-agent {qrad_agent.__version__} ({sys.prefix})"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the fleet subcommands to cli.py's subparsers."""
    update = sub.add_parser("update", help="apply a signed update bundle, with health check and rollback")
    update.add_argument("--config", type=Path, required=True)
    what = update.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, help="bundle directory or tar archive")
    what.add_argument("--sha256", help="fetch the bundle with this digest from sync.bundle_url")
    what.add_argument("--recover", action="store_true", help="undo an interrupted update (before a start)")
    what.add_argument("--status", action="store_true", help="installed versions and the update history")
    update.add_argument("--crash-loop", action="store_true", help="with --recover: the agent crash-loops; "
                        "roll back an update made within update.probation_s")
    update.add_argument("--json", action="store_true")
    sup = sub.add_parser("supervise", help="run and restart the agent as its systemd unit would (no systemd)")
    sup.add_argument("--config", type=Path, required=True)
    sup.add_argument("--restart-s", type=float, default=1.0, help="RestartSec (default 1)")
    sup.add_argument("--burst", type=int, default=5, help="StartLimitBurst (default 5)")
    sup.add_argument("--interval-s", type=float, default=60.0, help="StartLimitIntervalSec (default 60)")
    reset = sub.add_parser("factory-reset", help="erase state, outbox, jobs, learned models, occupants' data")
    reset.add_argument("--config", type=Path, required=True)
    reset.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    reset.add_argument("--identity", action="store_true", help="erase the device identity too (re-provision)")
    reset.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.command == "update":
        return _update(args, cfg)
    if args.command == "supervise":
        from qrad_agent.update.supervisor import Supervisor

        return Supervisor(cfg, args.config, args.restart_s, args.burst, args.interval_s).run()
    from qrad_agent.ops.factory_reset import cmd_factory_reset

    return cmd_factory_reset(args, cfg)


def _update(args: argparse.Namespace, cfg) -> int:
    from qrad_agent.update.bundle import UpdateRefused
    from qrad_agent.update.layout import LockBusy
    from qrad_agent.update.updater import Updater

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    updater = Updater(cfg, say)
    if args.status:
        data: dict[str, Any] = {"current": updater.layout.current_version(),
                                "previous": updater.layout.previous_version(),
                "running": qrad_agent.__version__, "history": updater.layout.history()[-20:]}
        print(json.dumps(data, indent=2) if args.json else
              f"current {data['current']}, previous {data['previous']}\n"
              + "\n".join(f"{e.get('outcome')}: {e.get('from')} -> {e.get('to')} {e.get('reason') or ''}"
                          for e in data["history"]))
        return 0
    if args.recover:
        outcome = updater.recover(crash_loop=args.crash_loop)
        print(json.dumps(outcome) if args.json else (outcome or "nothing to recover"))
        return 0
    if os.geteuid() != 0 and not os.access(updater.layout.root.parent, os.W_OK):
        print(f"qrad-agent update: needs root (or write access to {updater.layout.root})", file=sys.stderr)
        return EX_NOPERM
    source = args.file
    try:
        if args.sha256:
            source = _fetch(cfg, args.sha256)
        outcome = updater.update(source)
    except UpdateRefused as exc:
        print(f"qrad-agent update: refused: {exc}", file=sys.stderr)
        return 1
    except LockBusy:
        print("qrad-agent update: another update is running", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        if args.sha256 and source is not None and source != args.file:
            Path(source).unlink(missing_ok=True)
    print(json.dumps(outcome) if args.json else f"{outcome['outcome']}: {outcome.get('from')} -> {outcome['to']}"
          + (f" ({outcome['reason']})" if outcome.get("reason") else ""))
    return 0 if outcome["outcome"] in ("succeeded", "installed") else 1


def _fetch(cfg, sha256: str) -> Path:
    """The bundle downloaded by digest over mutual TLS (sync/bundles.py). Raises UpdateRefused."""
    from qrad_agent.sync.bundles import BundleError, BundleFetcher
    from qrad_agent.update.bundle import UpdateRefused

    s = cfg.sync
    if s is None or not s.bundle_url:
        raise UpdateRefused("no_source", "sync.bundle_url is not configured: give --file")
    fetcher = BundleFetcher(s.bundle_url, cfg.update.root / "incoming", 2048 << 20, s.ca_file, s.cert_file,
                            s.key_file, allow_http=s.bundle_allow_http)
    try:
        return fetcher.fetch(sha256)
    except BundleError as exc:
        raise UpdateRefused("fetch_failed", str(exc)) from exc
