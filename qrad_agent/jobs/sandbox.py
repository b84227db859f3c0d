"""The bubblewrap command line of one job, and the dedicated unprivileged host user it runs as.

The process chain, each step exec'ing the next, so one pid from fork to the job:
``sh`` (root: writes its own pid into every cgroup.procs of the job, so the job's first instruction is
already counted and limited) -> ``prlimit`` (core 0, file size, open files) -> ``setpriv`` (the job user,
no supplementary groups, no_new_privs, empty capability sets) -> ``bwrap`` (unprivileged user namespace,
new pid/net/ipc/uts/cgroup/mount namespaces, only loopback, read-only /usr, the job's directory as the one
writable place, private /tmp, new session, no capabilities, no nested user namespaces, seccomp) -> the job.

bwrap runs as the job user, so it must be able to traverse to what it binds: the runtime paths and the jobs
directory (root:<job group> 0710, listing denied). bwrap 0.8's ``--bind-fd`` resolves the descriptor back
to its path, so handing over descriptors does not lift that requirement.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from qrad_agent.errors import AgentError
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.seccomp import build_filter, filter_fd

SANDBOX_UID = 1000
JOB_DIR = "/job"
JOIN_CGROUPS = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'
"""POSIX sh: write our pid into the first $1 files (the job's cgroup.procs), then exec the rest."""
SANDBOX_START_FAILED = 125
MAX_OPEN_FILES = 4096


class SandboxError(AgentError):
    """The sandbox cannot be built on this machine (no bwrap, no job user, unknown architecture)."""


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int


def ensure_job_user(cfg: JobsConfig) -> JobUser:
    """The dedicated host user of the jobs; created (``useradd --system``) when missing and allowed.

    In production systemd-sysusers creates it (``u qrad-job - "qrad-agent jobs" - /usr/sbin/nologin``).
    """
    try:
        entry = pwd.getpwnam(cfg.job_user)
    except KeyError:
        if not cfg.create_job_user:
            raise SandboxError(f"job user {cfg.job_user!r} missing and create_job_user is false") from None
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", cfg.job_user], check=True, capture_output=True)
        entry = pwd.getpwnam(cfg.job_user)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SandboxError(f"job user {cfg.job_user!r} must not be root")
    return JobUser(cfg.job_user, entry.pw_uid, entry.pw_gid)


def check_tools(cfg: JobsConfig) -> None:
    """Raise SandboxError naming what is missing to start sandboxes here."""
    missing = [str(p) for p in (cfg.bwrap,) if not os.access(p, os.X_OK)]
    missing += [t for t in ("setpriv", "prlimit") if shutil.which(t) is None]
    if missing:
        raise SandboxError(f"missing: {', '.join(missing)} (Debian: bubblewrap, util-linux)")


@dataclass
class Launch:
    """A ready command line and the descriptors it needs; `close()` after the spawn (or on failure)."""

    argv: list[str]
    env: dict[str, str]
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()


def job_env(cfg: JobsConfig, job_id: str, cores: int) -> dict[str, str]:
    threads = str(cores)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": JOB_DIR, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": threads,
           "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "QRAD_JOB_ID": job_id,
           "QRAD_CORES": threads}
    env.update(cfg.env)
    return env


def resolve_command(cfg: JobsConfig, command: list[str]) -> list[str]:
    """``python``/``python3`` become the configured interpreter; relative paths are inside /job."""
    head = command[0]
    if head in ("python", "python3"):
        head = str(cfg.python)
    elif not head.startswith("/"):
        head = f"{JOB_DIR}/{head}"
    return [head, *command[1:]]


def build_launch(cfg: JobsConfig, user: JobUser, job_id: str, cores: int, work_dir: Path,
                 procs_files: list[Path], output_bytes: int, command: list[str]) -> Launch:
    """The full argv of one job; the descriptors it opens are in ``Launch.fds``."""
    launch = Launch(argv=[], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        launch.argv = [
            "/bin/sh", "-c", JOIN_CGROUPS, "sh", str(len(procs_files)), *map(str, procs_files),
            shutil.which("prlimit") or "prlimit", "--core=0", f"--fsize={output_bytes}",
            f"--nofile={MAX_OPEN_FILES}", "--",
            shutil.which("setpriv") or "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
            "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--",
            *_bwrap_args(cfg, launch, job_id, cores, work_dir), "--", *resolve_command(cfg, command)]
    except BaseException:
        launch.close()
        raise
    return launch


def _bwrap_args(cfg: JobsConfig, launch: Launch, job_id: str, cores: int, work_dir: Path) -> list[str]:
    args = [str(cfg.bwrap), "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "job",
            "--clearenv"]
    for key, value in job_env(cfg, job_id, cores).items():
        args += ["--setenv", key, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--ro-bind-try", "/etc/localtime", "/etc/localtime",
             "--proc", "/proc", "--dev", "/dev", "--size", str(cfg.tmp_mb << 20), "--tmpfs", "/tmp"]
    for bind in cfg.runtime:
        args += ["--ro-bind", str(bind.host), str(bind.sandbox)]
    args += ["--bind", str(work_dir), JOB_DIR, "--remount-ro", "/", "--chdir", JOB_DIR]
    try:
        program = build_filter()
    except ValueError as exc:
        raise SandboxError(str(exc)) from exc
    seccomp = filter_fd(program)
    launch.fds.append(seccomp)
    args += ["--seccomp", str(seccomp)]
    return args
