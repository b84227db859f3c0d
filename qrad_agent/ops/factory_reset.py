"""`qrad-agent factory-reset`: erase what the heater learned and kept about its owner (EN 303 645 5.11).

Erased (paths from the configuration):
  - ``state_dir``: controller state, the learned power curve and PID gains, the override, latched alarms'
    records, energy totals, the command replay window: everything in it but the kept keys below;
  - the sync outbox (``sync.outbox_path`` and its SQLite -wal/-shm/-journal files): readings of the room;
  - ``jobs.jobs_dir``: every job's files, results and logs (their own filesystems unmounted first);
  - ``update.root/incoming``: downloaded bundles.
Kept, and named in the output:
  - the device identity (``sync.cert_file``, ``sync.key_file``), unless ``--identity``: then they are erased
    too and the heater must be provisioned again before it can reach the platform;
  - the platform's public keys and CA (jobs, commands, releases): public, the platform's, not the owner's;
  - the installed releases and the configuration file (the installer's; it holds no occupant data unless
    someone put it there: docs/security.md).

The agent must be stopped (its API socket must not answer), the caller must be root, and the command asks
for the device id as confirmation unless ``--yes``. Files are unlinked and their directories fsynced: on
flash storage the blocks are not overwritten (wear levelling); full-disk encryption with a key erased here
is the remedy, noted in docs/security.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qrad_agent.config import AgentConfig
from qrad_agent.jobs import jobfs

EX_NOPERM = 77
UNPROVISIONED = "UNPROVISIONED"


@dataclass
class ResetPlan:
    """What the reset erases (files and directory contents) and what it keeps (path -> why)."""

    erase_contents: list[Path] = field(default_factory=list)
    erase_files: list[Path] = field(default_factory=list)
    keep: dict[Path, str] = field(default_factory=dict)


def plan(cfg: AgentConfig, identity: bool) -> ResetPlan:
    """The reset of ``cfg``'s heater; ``identity``: erase the device identity too."""
    p = ResetPlan()
    p.erase_contents += [cfg.state_dir, cfg.jobs.jobs_dir, cfg.update.root / "incoming"]
    s = cfg.sync
    if s is not None:
        outbox = s.outbox_path
        p.erase_files += [outbox, *(outbox.with_name(outbox.name + sfx) for sfx in ("-wal", "-shm", "-journal"))]
        replay = outbox.with_name("sync-commands.db")
        p.erase_files += [replay, *(replay.with_name(replay.name + sfx) for sfx in ("-wal", "-shm", "-journal"))]
        for ident in (s.cert_file, s.key_file):
            if ident is not None:
                if identity:
                    p.erase_files.append(ident)
                else:
                    p.keep[ident] = "device identity (erase with --identity, then provision again)"
        for public in (s.ca_file, s.platform_public_key):
            if public is not None:
                p.keep[public] = "platform's public key or CA"
    for public in (cfg.jobs.public_key, cfg.update.release_public_key):
        if public is not None:
            p.keep[public] = "platform's public key"
    return p


def _kept(path: Path, keep: dict[Path, str]) -> bool:
    resolved = path.resolve()
    return any(resolved == k.resolve() for k in keep)


def _holds_kept(path: Path, keep: dict[Path, str]) -> bool:
    resolved = path.resolve()
    return any(resolved in k.resolve().parents for k in keep)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _erase_tree(directory: Path, keep: dict[Path, str], erased: list[str]) -> None:
    """Remove everything under ``directory`` except kept files (and the directories leading to them)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if _kept(entry, keep):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if _holds_kept(entry, keep):
                _erase_tree(entry, keep, erased)
                continue
            shutil.rmtree(entry)
        else:
            entry.unlink()
        erased.append(str(entry))
    _fsync_dir(directory)


def execute(p: ResetPlan) -> list[str]:
    """Apply the plan; returns what was erased. Raises OSError when something cannot be erased."""
    erased: list[str] = []
    for path in p.erase_files:
        if path.exists() or path.is_symlink():
            path.unlink()
            erased.append(str(path))
            _fsync_dir(path.parent)
    for directory in p.erase_contents:
        if directory.is_dir():
            for mount in jobfs.mounts_under(directory):  # a job's own filesystem (its image goes below)
                jobfs.umount(mount)
            _erase_tree(directory, p.keep, erased)
    return erased


def agent_running(cfg: AgentConfig) -> bool:
    """True when something answers on the agent's API socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(cfg.api.socket_path))
        except OSError:
            return False
    return True


def cmd_factory_reset(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """The CLI: checks, confirmation, erase, report. 0 done, 1 not confirmed / failed, 77 not root,
    75 the agent is running."""
    if os.geteuid() != 0:
        print("qrad-agent factory-reset: must run as root", file=sys.stderr)
        return EX_NOPERM
    if agent_running(cfg):
        print(f"qrad-agent factory-reset: the agent is running ({cfg.api.socket_path} answers); stop it first "
              "(systemctl stop qrad-agent)", file=sys.stderr)
        return 75
    p = plan(cfg, args.identity)
    print("factory reset of heater", cfg.device_id, file=sys.stderr)
    print("erases: " + ", ".join(str(x) for x in [*p.erase_contents, *p.erase_files]), file=sys.stderr)
    print("keeps:  " + ("; ".join(f"{k} ({why})" for k, why in p.keep.items()) or "nothing"), file=sys.stderr)
    if not args.yes:
        try:
            answer = input(f"type the device id ({cfg.device_id}) to erase: ")
        except EOFError:
            answer = ""
        if answer.strip() != cfg.device_id:
            print("not confirmed; nothing erased", file=sys.stderr)
            return 1
    try:
        erased = execute(p)
    except OSError as exc:
        print(f"qrad-agent factory-reset: {exc}", file=sys.stderr)
        return 1
    if args.identity:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        (cfg.state_dir / UNPROVISIONED).write_text("device identity erased: provision again\n")
    report = {"device_id": cfg.device_id, "erased": erased, "kept": {str(k): v for k, v in p.keep.items()},
              "identity_erased": bool(args.identity)}
    print(json.dumps(report, indent=2) if args.json else f"erased {len(erased)} item(s); kept "
          f"{len(p.keep)} key file(s)" + ("; the heater must be provisioned again" if args.identity else ""))
    return 0
