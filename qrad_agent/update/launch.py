"""Starting the updater from the running agent (the platform's ``update_agent`` command).

The updater restarts the agent, so it must not be the agent's child in the agent's cgroup: under systemd it
runs as its own transient unit (``systemd-run --unit=qrad-agent-update``), elsewhere in its own session
(``setsid --fork``), so the call returns at once. Its outcome reaches the platform as the ``update`` event
the restarted agent reports (platform.Reporter.report_updates). Blocking: call it in a thread.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from qrad_agent.config import AgentConfig
from qrad_agent.errors import AgentError


class UpdateLaunchError(AgentError):
    """The updater could not be started; the message says why."""


def agent_config_path(argv: list[str]) -> Path | None:
    """The ``--config`` this agent process was started with (``qrad-agent run --config FILE``)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1]).resolve()
    return None


def launch_updater(cfg: AgentConfig, bundle_sha256: str, config_path: Path | None = None,
                   argv: list[str] | None = None) -> list[str]:
    """Start ``qrad-agent update --sha256`` detached; returns the command. ``config_path``: the agent's
    configuration file (default: the ``--config`` of ``argv``, this process's arguments). Raises
    UpdateLaunchError."""
    if cfg.update.release_public_key is None:
        raise UpdateLaunchError("update.release_public_key is not configured: updates refused")
    if cfg.sync is None or not cfg.sync.bundle_url:
        raise UpdateLaunchError("sync.bundle_url is not configured: nowhere to fetch the bundle from")
    argv = sys.argv if argv is None else argv
    config = config_path or agent_config_path(argv)
    if config is None:
        raise UpdateLaunchError("the agent's --config is unknown: cannot start the updater")
    exe = str(Path(sys.executable).with_name("qrad-agent"))
    command = [exe, "update", "--config", str(config), "--sha256", bundle_sha256]
    if cfg.update.restart == "systemd":
        runner = shutil.which("systemd-run")
        if runner is None:
            raise UpdateLaunchError("systemd-run not found")
        command = [runner, "--unit=qrad-agent-update", "--collect", "--quiet", *command]
    else:
        setsid = shutil.which("setsid")
        if setsid is None:
            raise UpdateLaunchError("setsid not found")
        command = [setsid, "--fork", *command]
    try:  # its output goes to <update.root>/update.log: a pipe would keep this call waiting for the update
        cfg.update.root.mkdir(parents=True, exist_ok=True)
        with (cfg.update.root / "update.log").open("ab") as out:
            done = subprocess.run(command, stdout=out, stderr=out, timeout=30, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateLaunchError(f"updater not started: {exc}") from exc
    if done.returncode != 0:
        raise UpdateLaunchError(f"updater not started: exit {done.returncode} (see {cfg.update.root}/update.log)")
    return command
