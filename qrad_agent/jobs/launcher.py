"""The jobs' privileged operations, kept apart from the agent (privilege separation).

Starting and stopping sandboxes needs what the rest of the agent must not have: switching to the job user
(CAP_SETUID/CAP_SETGID), creating user/mount/pid/net namespaces (bubblewrap), signalling the job user's
processes (CAP_KILL), handing a job its directory and taking it back (CAP_CHOWN, CAP_FOWNER,
CAP_DAC_READ_SEARCH). `Launcher` is exactly those operations, by job id:

    setup()                       job user, tools, jobs directory group            -> JobUser
    prepare(job_id)               <jobs_dir>/<id> root:<job group> 0710, work/ to the job user 0700
    spawn(job_id, cores, output_bytes, command, stdout_fd, stderr_fd)   the sandbox -> Popen-like
    terminate(job_id)             SIGTERM the job's own processes (not bwrap)       -> count
    kill(job_id)                  SIGKILL everything in the job's cgroup (thawing v1 frozen tasks)
    reclaim(job_id)               work/ back to root, owner-writable, once the job is gone; directories
                                  nested deeper than tree.MAX_DEPTH are deleted
    work_usage(job_id)            allocated bytes and inodes of work/ (output limits), and the free
                                  space and inodes of its filesystem                    -> TreeUsage
    make_fs(job_id, output_bytes) work/ becomes the job's own ext4 image, its size and inodes the job's
                                  limits (jobfs.py); None when degraded (see below)     -> FsLimits
    destroy_fs(job_id)            unmount it and delete its image (before its files are deleted)
    open_work(job_id)             a read-only directory descriptor of work/ (results)   -> fd
    floor_jobs(reason)            the dead-man: freeze every job, their quota to its minimum (never raises)
    lift_floor()                  thaw them again (the agent sets their quota itself)

Disk limits (``disk_limits``): "kernel" when `setup` could make, loop-mount and unmount a probe ext4 image
(root, /dev/loop-control, mkfs.ext4): every job then writes in a filesystem of its own and ENOSPC is the
kernel's. Otherwise "user_space: <why>": jobs still run, in a plain directory on the jobs' filesystem, with
only the runner's polling of allocated blocks and inodes and the agent's free-space reserve to stop them (a
hostile job can outrun those between two polls); the runner reports that degraded mode in its status and in
every result (``disk_limits``), and logs it at start.

Two deployments (``jobs.launcher_socket``):
- unset: the agent calls a `Launcher` in its own process and must hold those privileges (tests, a
  development machine);
- set: `LauncherServer` runs as its own service (``qrad-agent launcher``, systemd/qrad-agent-launcher.service,
  no network at all) and the agent, whose unit then drops every capability, namespace and the @mount and
  @setuid system calls, asks it through `RemoteLauncher` over a Unix SOCK_SEQPACKET socket. The server
  takes only job ids and numbers from its peer and derives every path from its own configuration, refuses
  symbolic links and hard links in what it hands over, and serves only the uids it is told to: a
  compromised agent can at most run code in a sandbox as the job user.

Wire format: one JSON object per datagram (at most `MAX_MESSAGE`), request ``{"op": ..., ...}``, answer
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. ``spawn`` carries the job's stdout and stderr
descriptors (SCM_RIGHTS), answers ``{"ok": true, "pid": N}``, and keeps the connection: the server sends
``{"exit": returncode}`` when the sandbox ends, and kills the job if the agent closes the connection first.
``open_work`` answers with the directory descriptor (SCM_RIGHTS): under systemd the launcher's mounts are in
its own mount namespace (they do not propagate back to the host), so the agent reads a job's files only
through that descriptor.
``watch`` (``{"op": "watch", "timeout_s": T}``) is the dead-man: the agent sends a beat (any datagram) at
least every T s from its event loop; when none comes for T s (the agent hangs, its loop is blocked, or it
is stopped) or the connection closes (it died), the launcher puts every job at the power floor (frozen,
minimum quota) without the agent, and lifts that when the beats come back.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any, Protocol

import structlog

from qrad_agent.errors import AgentError
from qrad_agent.jobs import jobfs
from qrad_agent.jobs.cgroups import JobCgroup, JobsCgroupTree
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.model import JOB_ID_PATTERN
from qrad_agent.jobs.sandbox import JobUser, SandboxError, build_launch, check_tools, ensure_job_user
from qrad_agent.jobs.store import JobStore
from qrad_agent.jobs.tree import MAX_DEPTH, TreeUsage, TreeWalk, remove_tree_at, usage

log = structlog.get_logger(component="launcher")

MAX_MESSAGE = 1 << 16
LAUNCHER_LOST = 124
"""Return code given to a job whose launcher connection broke (the launcher killed it or died)."""
REQUEST_TIMEOUT_S = 3.0
"""Longest wait for the launcher service's answer (s); it answers a local request in milliseconds. The runner
calls it from worker threads (never its event loop), so this bounds how long a hung service holds one job."""
WALK_TIMEOUT_S = 30.0
"""``work_usage`` walks the job's tree (up to ``max_output_inodes`` entries, to tree.MAX_DEPTH): a loaded
heater takes seconds for it; a wait past this counts the output as not measured that time."""
SETUP_TIMEOUT_S = 30.0
"""``setup`` may create the job user (useradd); the agent asks it once, before its components start."""
SPAWN_TIMEOUT_S = 10.0
"""``spawn`` hands the job its directory and starts bubblewrap; a slow one only delays that job."""
MAKE_FS_TIMEOUT_S = 120.0
"""``make_fs`` runs mkfs.ext4 (copying the bundle, up to max_bundle_mb) and mounts; the runner calls it from
a worker thread, so this bounds only how long that job waits."""
KERNEL = "kernel"


class LauncherError(AgentError):
    """A launcher request was refused or could not be carried out; the message says which and why."""


class LauncherUnavailable(LauncherError):
    """The launcher service cannot be reached (not running, restarting): the job is not at fault."""


class JobProcess(Protocol):
    """What the runner needs of a started sandbox (a subset of subprocess.Popen)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...


class Launcher:
    """The privileged operations, carried out in this process."""

    def __init__(self, cfg: JobsConfig, tree: JobsCgroupTree | None = None, store: JobStore | None = None) -> None:
        self.cfg = cfg
        self.tree = tree or JobsCgroupTree(cfg.cgroup)
        self.store = store or JobStore(cfg.jobs_dir)
        self.user: JobUser | None = None
        self.fs_reason: str | None = "not set up"  # why jobs get no filesystem of their own; None: they do
        # one mount or unmount of job filesystems at a time: the server answers each connection in its own
        # thread, and a loop device detached (autoclear) by one unmount while another mount attaches one was
        # seen to lose the new mount ("not mounted" at once) or read a stale superblock
        self._fs_lock = threading.Lock()

    @property
    def disk_limits(self) -> str:
        """"kernel", or "user_space: <why>" (the degraded mode, see the module doc)."""
        return KERNEL if self.fs_reason is None else f"user_space: {self.fs_reason}"

    def setup(self) -> JobUser:
        """Check bwrap/setpriv/prlimit, find (or create) the job user, own the jobs directory's group; probe
        the per-job filesystems and unmount what a crash left of them (jobfs.sweep).

        Raises SandboxError when the tools or the user are missing."""
        check_tools(self.cfg)
        self.user = ensure_job_user(self.cfg)
        try:
            self.store.setup(self.user.gid)
        except PermissionError as exc:
            raise SandboxError(f"no privilege to prepare {self.store.root} for the job user ({exc}); run "
                               "qrad-agent-launcher.service and set jobs.launcher_socket") from exc
        self.fs_reason = jobfs.unavailable_reason(self.store.root)
        if self.fs_reason is None:
            with self._fs_lock:
                gone = jobfs.sweep(self.store.root)
            if gone:
                log.warning("stale job filesystems unmounted", mounts=gone)
        else:
            log.error("jobs' disk limits degraded to user-space accounting: no filesystem per job",
                      why=self.fs_reason)
        return self.user

    def ping(self) -> str:
        return "in process"

    def floor_jobs(self, reason: str) -> bool:
        """The dead-man's act: every job frozen and their CPU quota at its minimum, each write tried on its
        own. Never raises; returns whether the freeze took."""
        frozen = True
        try:
            self.tree.set_quota(0.0, 1)
        except Exception as exc:  # the freeze below still matters
            log.error("dead-man: quota not lowered", error=str(exc))
        try:
            self.tree.freeze()
        except Exception as exc:
            frozen = False
            log.error("dead-man: jobs not frozen", error=str(exc))
        log.error("dead-man: jobs at the power floor", reason=reason, frozen=frozen)
        return frozen

    def lift_floor(self) -> None:
        """Thaw the jobs the dead-man froze; the agent's power chain sets their quota again. Never raises."""
        try:
            self.tree.thaw()
        except Exception as exc:
            log.error("dead-man: jobs not thawed", error=str(exc))
            return
        log.warning("dead-man: agent beating again, jobs thawed")

    def _user(self) -> JobUser:
        if self.user is None:
            self.setup()
        assert self.user is not None
        return self.user

    def _job_dir(self, job_id: str) -> Path:
        return _real_dir(self._valid_id(job_id), self.store.job_dir(job_id))

    def _work_dir(self, job_id: str) -> Path:
        return _real_dir(job_id, self._job_dir(job_id) / "work")

    def prepare(self, job_id: str) -> None:
        """Hand the job's work directory to the job user. Raises LauncherError on a hard link (it could
        hand a file outside the job, e.g. /etc/shadow, to the job user) or a bad id or layout."""
        user = self._user()
        job_dir = self._job_dir(job_id)
        work = self._work_dir(job_id)
        fd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, 0, user.gid)
            os.fchmod(fd, 0o710)
        finally:
            os.close(fd)
        _chown_tree(work, user.uid, user.gid, strict=True)
        os.chmod(work, 0o700)

    def spawn(self, job_id: str, cores: int, output_bytes: int, command: list[str], stdout_fd: int,
              stderr_fd: int) -> subprocess.Popen:
        """Start the job's sandbox in its (already created) cgroup; raises SandboxError/OSError."""
        user = self._user()
        work = self._work_dir(job_id)
        cgroup = self.tree.job(job_id)
        launch = build_launch(self.cfg, user, job_id, cores, work, cgroup.procs_files, output_bytes, command)
        try:
            return subprocess.Popen(launch.argv, env=launch.env, pass_fds=launch.fds, stdin=subprocess.DEVNULL,
                                    stdout=stdout_fd, stderr=stderr_fd, start_new_session=True)
        finally:
            launch.close()

    def terminate(self, job_id: str) -> int:
        """SIGTERM the job's own processes (inside its pid namespace, not bwrap); returns how many."""
        count = 0
        for pid in _sandboxed_pids(self._cgroup(job_id)):
            try:
                os.kill(pid, signal.SIGTERM)
                count += 1
            except ProcessLookupError:
                pass
        return count

    def kill(self, job_id: str) -> None:
        """SIGKILL every process in the job's cgroup."""
        self._cgroup(job_id).kill_all(self.tree.thaw_root)

    def reclaim(self, job_id: str) -> None:
        """Give the finished job's work directory back to root (owner-writable) so the agent can read and
        delete it. Files with several links are left alone (a job may link another job's file); directories
        deeper than tree.MAX_DEPTH are deleted (the job was stopped for making them). A job filesystem not
        mounted (a restart) is mounted again first."""
        try:
            job_dir = self._job_dir(job_id)
            if self.fs_reason is None and (job_dir / jobfs.IMAGE_NAME).is_file():
                with self._fs_lock:
                    jobfs.ensure_mounted(job_dir)
            work = self._work_dir(job_id)
        except LauncherError:
            return
        _chown_tree(work, 0, 0, strict=False)

    def work_usage(self, job_id: str) -> TreeUsage:
        """Allocated bytes (st_blocks) and inodes under the job's work directory, walked to tree.MAX_DEPTH;
        on a job filesystem also its free bytes and inodes (statvfs)."""
        work = self._work_dir(job_id)
        walked = usage(work)
        if not jobfs.is_mounted(work):
            return walked
        free = jobfs.limits(work)
        return TreeUsage(walked.allocated_bytes, walked.inodes, walked.too_deep, free.bytes, free.inodes)

    def make_fs(self, job_id: str, output_bytes: int) -> jobfs.FsLimits | None:
        """The job's work directory as a filesystem of its own (jobfs.create): ``output_bytes`` free beyond
        the bundle, ``jobs.max_output_inodes`` free inodes. Idempotent (a checkpointed job keeps its image).
        None in the degraded mode. Raises LauncherError (bad id), jobfs.JobFsError/OSError."""
        job_dir = self._job_dir(job_id)
        if self.fs_reason is not None:
            return None
        self._work_dir(job_id)
        with self._fs_lock:
            return jobfs.create(job_dir, output_bytes, self.cfg.max_output_inodes)

    def destroy_fs(self, job_id: str) -> None:
        """Unmount the job's filesystem and delete its image (no-op without one). Raises JobFsError."""
        try:
            job_dir = self._job_dir(job_id)
        except LauncherError:
            return
        with self._fs_lock:
            jobfs.destroy(job_dir)

    def open_work(self, job_id: str) -> int:
        """A read-only directory descriptor of the job's work directory (its filesystem mounted again if a
        restart lost the mount); the caller closes it. Raises LauncherError/OSError."""
        job_dir = self._job_dir(job_id)
        if self.fs_reason is None and (job_dir / jobfs.IMAGE_NAME).is_file():
            with self._fs_lock:
                jobfs.ensure_mounted(job_dir)
        return os.open(self._work_dir(job_id), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def _cgroup(self, job_id: str) -> JobCgroup:
        return self.tree.job(self._valid_id(job_id))

    @staticmethod
    def _valid_id(job_id: object) -> str:
        """``job_id`` when it is a valid id (it names directories and cgroups); else LauncherError."""
        if not isinstance(job_id, str) or not re.match(JOB_ID_PATTERN, job_id):
            raise LauncherError(f"bad job id {job_id!r}")
        return job_id


def _real_dir(job_id: str, path: Path) -> Path:
    """``path`` if it is a directory itself (not a symbolic link to one); else LauncherError."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise LauncherError(f"job {job_id}: no directory {path}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LauncherError(f"job {job_id}: {path} is not a directory")
    return path


def _chown_tree(root: Path, uid: int, gid: int, strict: bool) -> None:
    """chown every directory and file under ``root`` by descriptor, never following a symbolic link.

    Directories become owner-rwx, so the new owner can always remove what is inside. ``strict`` (handing a
    bundle to the job user): a hard link, device node, FIFO or socket raises LauncherError, since a hard
    link could hand over a file from outside the job. Not strict (taking a finished job back): files with
    several links are skipped (a job may link another job's file), anything else is taken.

    Walked without recursion to tree.MAX_DEPTH (tree.py): deeper directories make ``strict`` raise, and are
    deleted otherwise (only a job makes them, and it is stopped for it)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRWXU)
    finally:
        os.close(fd)
    walk = TreeWalk(root)
    for entry in walk:
        st, name, dirfd = entry.st, entry.name, entry.dir_fd
        shown = entry.rel.decode(errors="backslashreplace")
        if stat.S_ISDIR(st.st_mode):
            if entry.depth >= MAX_DEPTH:
                if strict:
                    raise LauncherError(f"{root}: {shown}: directories nested deeper than {MAX_DEPTH} levels")
                remove_tree_at(dirfd, name)
                continue
            os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(st.st_mode) | stat.S_IRWXU, dir_fd=dirfd)
            continue
        special = not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode))
        if strict and special:
            raise LauncherError(f"{root}: {shown} is not a regular file or symbolic link")
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            if strict:
                raise LauncherError(f"{root}: {shown} has {st.st_nlink} links; hard links are refused")
            continue
        os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)


def _sandboxed_pids(cgroup: JobCgroup) -> list[int]:
    """The job's own processes: inside its pid namespace and not that namespace's init (bwrap)."""
    found = []
    for pid in cgroup.pids():
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        except OSError:
            continue
        if len(nspid) >= 2 and nspid[-1] != "1":
            found.append(pid)
    return found


# -- the separate service --


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise LauncherError(f"message of {len(data)} bytes over {MAX_MESSAGE}")
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _recv(sock: socket.socket, maxfds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message (None when the peer closed) and the descriptors that came with it."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, maxfds) if maxfds else (sock.recv(MAX_MESSAGE), [], 0, None)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = json.loads(data)
    if not isinstance(message, dict):
        for fd in fds:
            os.close(fd)
        raise LauncherError("a message must be a JSON object")
    return message, list(fds)


def _peer_uid(sock: socket.socket) -> int:
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


class LauncherServer:
    """Serves a `Launcher` on a Unix SOCK_SEQPACKET socket (mode 0600), one thread per connection.

    ``allowed_uids``: peers served (SO_PEERCRED); others get an error and nothing else."""

    def __init__(self, launcher: Launcher, path: Path, allowed_uids: set[int] | None = None,
                 poll_s: float = 0.05) -> None:
        self.launcher = launcher
        self.path = path
        self.allowed_uids = allowed_uids if allowed_uids is not None else {0}
        self.poll_s = poll_s
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._floored = False  # the dead-man put the jobs at the floor and has not lifted it

    def bind(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(64)
        self._sock = sock

    def serve_forever(self) -> None:
        """Accept until `close`; each connection on its own daemon thread."""
        assert self._sock is not None, "bind() first"
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stop.is_set():
                    return
                raise
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="launcher-conn").start()

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        self.path.unlink(missing_ok=True)

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        with conn:
            try:
                request, fds = _recv(conn, maxfds=2)
                if request is None:
                    return
                uid = _peer_uid(conn)
                if uid not in self.allowed_uids:
                    log.warning("launcher request refused", peer_uid=uid, op=str(request.get("op")))
                    _send(conn, {"ok": False, "error": f"uid {uid} is not allowed"})
                    return
                if request.get("op") == "spawn":
                    owned, fds = fds, []  # _spawn closes them
                    self._spawn(conn, request, owned)
                    return
                if request.get("op") == "watch":
                    self._watch(conn, request)
                    return
                if request.get("op") == "open_work":
                    raw_id = request.get("job_id")
                    work_fd = self.launcher.open_work(raw_id if isinstance(raw_id, str) else "")
                    try:
                        _send(conn, {"ok": True}, [work_fd])
                    finally:
                        os.close(work_fd)
                    return
                _send(conn, {"ok": True, **self._dispatch(request)})
            except Exception as exc:  # every refusal goes back to the peer, the server keeps serving
                try:
                    _send(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                except OSError:
                    pass
            finally:
                for fd in fds:
                    os.close(fd)

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op, raw_id = request.get("op"), request.get("job_id")
        job_id = raw_id if isinstance(raw_id, str) else ""  # "" fails every operation's id check
        launcher = self.launcher
        if op == "ping":
            return {}
        if op == "setup":
            user = launcher.setup()
            return {"user": user.name, "uid": user.uid, "gid": user.gid, "disk_limits": launcher.disk_limits}
        if op == "prepare":
            launcher.prepare(job_id)
            return {}
        if op == "terminate":
            return {"count": launcher.terminate(job_id)}
        if op == "kill":
            launcher.kill(job_id)
            return {}
        if op == "reclaim":
            launcher.reclaim(job_id)
            return {}
        if op == "work_usage":
            u = launcher.work_usage(str(job_id))
            return {"bytes": u.allocated_bytes, "inodes": u.inodes, "too_deep": u.too_deep,
                    "fs_free_bytes": u.fs_free_bytes, "fs_free_inodes": u.fs_free_inodes}
        if op == "make_fs":
            output_bytes = request.get("output_bytes")
            if not isinstance(output_bytes, int) or not 1 <= output_bytes <= launcher.cfg.max_output_mb << 20:
                raise LauncherError(f"output_bytes {output_bytes!r} outside 1..{launcher.cfg.max_output_mb << 20}")
            made = launcher.make_fs(job_id, output_bytes)
            return {"fs": None if made is None else {"bytes": made.bytes, "inodes": made.inodes}}
        if op == "destroy_fs":
            launcher.destroy_fs(job_id)
            return {}
        raise LauncherError(f"unknown op {op!r}")

    def _spawn(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        cfg = self.launcher.cfg
        try:
            raw_id, cores, output_bytes, command = (request.get(k) for k in ("job_id", "cores", "output_bytes",
                                                                             "command"))
            job_id = raw_id if isinstance(raw_id, str) else ""  # "" fails the launcher's id check
            if len(fds) != 2:
                raise LauncherError("spawn needs the stdout and stderr descriptors")
            if not isinstance(cores, int) or not 1 <= cores <= cfg.max_cores:
                raise LauncherError(f"cores {cores!r} outside 1..{cfg.max_cores}")
            if not isinstance(output_bytes, int) or not 1 <= output_bytes <= cfg.max_output_mb << 20:
                raise LauncherError(f"output_bytes {output_bytes!r} outside 1..{cfg.max_output_mb << 20}")
            if (not isinstance(command, list) or not command or len(command) > 256
                    or not all(isinstance(a, str) and "\0" not in a for a in command)):
                raise LauncherError("command must be a list of 1..256 strings")
            proc = self.launcher.spawn(job_id, cores, output_bytes, command, fds[0], fds[1])
        finally:
            for fd in fds:
                os.close(fd)
        _send(conn, {"ok": True, "pid": proc.pid})
        log.info("sandbox started", job=job_id, pid=proc.pid)
        while proc.poll() is None:
            readable, _, _ = select.select([conn], [], [], self.poll_s)
            if readable and not conn.recv(MAX_MESSAGE):  # the agent went away: its job goes too
                log.warning("agent connection closed, killing job", job=job_id)
                self.launcher.kill(job_id)
                proc.wait()
                return
        try:
            _send(conn, {"exit": proc.returncode})
        except OSError:
            pass


    def _watch(self, conn: socket.socket, request: dict[str, Any]) -> None:
        """The dead-man: floor the jobs when the agent's beats stop for ``timeout_s`` or it disconnects."""
        timeout_s = request.get("timeout_s")
        if not isinstance(timeout_s, (int, float)) or not 0.5 <= timeout_s <= 600:
            raise LauncherError(f"watch timeout_s {timeout_s!r} outside 0.5..600")
        if self._floored:  # a new agent (after a crash): its own start puts power at the floor
            self.launcher.lift_floor()
            self._floored = False
        _send(conn, {"ok": True})
        log.info("dead-man armed", timeout_s=timeout_s)
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], float(timeout_s))
            if not readable:
                if not self._floored:
                    self._floored = True
                    self.launcher.floor_jobs(f"agent silent for {timeout_s:g} s")
                continue
            try:
                data = conn.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                if not self._floored:
                    self._floored = True
                    self.launcher.floor_jobs("agent connection closed")
                return
            if self._floored:
                self._floored = False
                self.launcher.lift_floor()


class RemoteProcess:
    """A sandbox started by the launcher service; `poll` reads its exit status from the connection."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            message, _ = _recv(self._sock)
        except BlockingIOError:
            return None
        except (OSError, ValueError):
            message = None
        if message is None or not isinstance(message.get("exit"), int):
            self.returncode = LAUNCHER_LOST
        else:
            self.returncode = message["exit"]
        self._sock.close()
        return self.returncode


class RemoteLauncher:
    """The agent's side: the same operations as `Launcher`, carried out by the launcher service."""

    def __init__(self, cfg: JobsConfig, path: Path) -> None:
        self.cfg = cfg
        self.path = path
        self.user: JobUser | None = None
        self.disk_limits = "user_space: launcher not set up"

    def _connect(self, timeout_s: float = REQUEST_TIMEOUT_S) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise LauncherUnavailable(f"launcher at {self.path} unreachable: {exc}") from exc
        return sock

    def _call(self, request: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        with self._connect(timeout_s) as sock:
            try:
                _send(sock, request)
                answer, _ = _recv(sock)
            except OSError as exc:  # reset, timeout: the service died or hangs
                raise LauncherUnavailable(f"launcher at {self.path}: {request['op']}: {exc}") from exc
        return _checked(answer, request["op"])

    def ping(self) -> str:
        """"reachable", or raises LauncherUnavailable."""
        self._call({"op": "ping"})
        return "reachable"

    def setup(self) -> JobUser:
        answer = self._call({"op": "setup"}, SETUP_TIMEOUT_S)  # at start, before the loop runs anything
        self.user = JobUser(answer["user"], answer["uid"], answer["gid"])
        self.disk_limits = str(answer.get("disk_limits", "user_space: the launcher does not say"))
        return self.user

    def prepare(self, job_id: str) -> None:
        self._call({"op": "prepare", "job_id": job_id})

    def spawn(self, job_id: str, cores: int, output_bytes: int, command: list[str], stdout_fd: int,
              stderr_fd: int) -> RemoteProcess:
        sock = self._connect(SPAWN_TIMEOUT_S)
        try:
            _send(sock, {"op": "spawn", "job_id": job_id, "cores": cores, "output_bytes": output_bytes,
                         "command": command}, [stdout_fd, stderr_fd])
            answer, _ = _recv(sock)
            answer = _checked(answer, "spawn")
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return RemoteProcess(sock, int(answer["pid"]))

    def terminate(self, job_id: str) -> int:
        return int(self._call({"op": "terminate", "job_id": job_id})["count"])

    def kill(self, job_id: str) -> None:
        self._call({"op": "kill", "job_id": job_id})

    def reclaim(self, job_id: str) -> None:
        self._call({"op": "reclaim", "job_id": job_id})

    def work_usage(self, job_id: str) -> TreeUsage:
        answer = self._call({"op": "work_usage", "job_id": job_id}, WALK_TIMEOUT_S)
        free_b, free_i = answer.get("fs_free_bytes"), answer.get("fs_free_inodes")
        return TreeUsage(int(answer["bytes"]), int(answer["inodes"]), bool(answer["too_deep"]),
                         int(free_b) if free_b is not None else None, int(free_i) if free_i is not None else None)

    def make_fs(self, job_id: str, output_bytes: int) -> jobfs.FsLimits | None:
        answer = self._call({"op": "make_fs", "job_id": job_id, "output_bytes": output_bytes}, MAKE_FS_TIMEOUT_S)
        fs = answer.get("fs")
        return jobfs.FsLimits(int(fs["bytes"]), int(fs["inodes"])) if isinstance(fs, dict) else None

    def destroy_fs(self, job_id: str) -> None:
        self._call({"op": "destroy_fs", "job_id": job_id}, MAKE_FS_TIMEOUT_S)

    def open_work(self, job_id: str) -> int:
        """The job's work directory as the launcher sees it (its own mount namespace), by descriptor."""
        with self._connect() as sock:
            try:
                _send(sock, {"op": "open_work", "job_id": job_id})
                answer, fds = _recv(sock, maxfds=1)
            except OSError as exc:
                raise LauncherUnavailable(f"launcher at {self.path}: open_work: {exc}") from exc
        try:
            _checked(answer, "open_work")
            if len(fds) != 1:
                raise LauncherError("launcher sent no descriptor for open_work")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds[0]

    def watch(self, timeout_s: float) -> socket.socket:
        """Arm the launcher's dead-man; returns the non-blocking connection to beat on (any datagram).
        Raises LauncherUnavailable or LauncherError."""
        sock = self._connect()
        try:
            _send(sock, {"op": "watch", "timeout_s": timeout_s})
            answer, _ = _recv(sock)
            _checked(answer, "watch")
        except OSError as exc:
            sock.close()
            raise LauncherUnavailable(f"launcher at {self.path}: watch: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock


def _checked(answer: dict[str, Any] | None, op: str) -> dict[str, Any]:
    if answer is None:
        raise LauncherUnavailable(f"launcher closed the connection during {op}")
    if not answer.get("ok"):
        raise LauncherError(f"launcher refused {op}: {answer.get('error', 'no reason given')}")
    return answer
