"""`qrad-agent floor`: compute power to its floor without the agent (the unit's ExecStopPost).

After the agent has exited, whatever the way (a clean stop, a crash, SIGKILL by the watchdog), systemd runs
this: every power interface of the configuration to its lowest-power state (P-state caps, RAPL limits, the
jobs' CPU quota), and the jobs frozen when jobs are configured. It guards a heater whose jobs are disabled
as well, where no launcher's dead-man runs. Exit 0 when every write took, 1 when one failed (each named).
"""

from __future__ import annotations

from qrad_agent.config import AgentConfig
from qrad_agent.errors import ActuatorError
from qrad_agent.power.manager import discover_actuators


def floor(cfg: AgentConfig) -> tuple[list[str], list[str]]:
    """Write the floor to every interface; returns (what was written, what failed), one line each."""
    done: list[str] = []
    failed: list[str] = []
    for actuator in discover_actuators(cfg.power):
        try:
            actuator.apply(0.0)
            done.append(f"{actuator.name}: at its minimum")
        except ActuatorError as exc:
            failed.append(f"{actuator.name}: {exc}")
    if cfg.jobs.enabled:
        from qrad_agent.jobs.cgroups import JobsCgroupTree

        try:
            tree = JobsCgroupTree(cfg.jobs.cgroup)
            tree.set_quota(0.0, 1)
            tree.freeze()
            done.append(f"jobs ({cfg.jobs.cgroup}): frozen, minimum quota")
        except (ActuatorError, OSError) as exc:
            failed.append(f"jobs ({cfg.jobs.cgroup}): {exc}")
    return done, failed


def agent_running(cfg: AgentConfig) -> bool:
    """Whether an agent answers on the configuration's API socket (a socket file left by a killed agent
    refuses the connection: not running)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(cfg.api.socket_path))
        except OSError:
            return False
    return True


def cmd_floor(cfg: AgentConfig, force: bool = False) -> int:
    """Print each interface written; 0 when all took, 1 otherwise or when the agent is running (it owns the
    interfaces then: `qrad-agent override`, or stop it) unless ``force``."""
    if not force and agent_running(cfg):
        print(f"the agent is running ({cfg.api.socket_path} answers): it writes power itself; stop it first "
              "(systemctl stop qrad-agent), or --force")
        return 1
    done, failed = floor(cfg)
    for line in done:
        print(line)
    for line in failed:
        print(f"FAILED {line}")
    if not done and not failed:
        print("no power interface found (power.sysfs_root, power.interfaces)")
        return 1
    return 1 if failed else 0
