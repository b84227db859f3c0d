"""Each job's writable space as a filesystem of its own, with its size and inode limits kept by the kernel.

A job's ``work/`` directory is the mount point of an ext4 image (``<jobs_dir>/<id>/work.img``, root 0600),
loop-mounted ``nodev,nosuid,noatime``. The image is made when the job first starts: preallocated
(``posix_fallocate``), so the blocks it may ever use are taken from the jobs' filesystem at once and a job
cannot grow the host's usage afterwards, then ``mkfs.ext4 -N <inodes> -d work/`` copies the bundle into it.
Its free space is the bundle's allocated bytes plus the job's ``output_mb`` plus `FULL_BYTES` (at most
16 KiB or 0.25 % more, never less), its free inodes the configured ``max_output_inodes`` (rounded up by ext4
to its inode-table blocks): a job that writes past either gets ENOSPC from the kernel, and the agent's
state, outbox and the other jobs' images are not touched. No root reserve (``-m 0``: the job is never
root); a small journal (from 16 MiB) so that a result survives a power cut; ``lost+found`` is removed
(``e2fsck`` makes it again if it needs one).

The image stays mounted while the result waits for the platform (the agent reads it through a directory
descriptor the launcher gives it, see launcher.py), through checkpoints and restarts, and is unmounted
and deleted when the job's files are (``destroy``). After a crash, `sweep` unmounts what belongs to no
job any more and `ensure_mounted` mounts a kept job's image again (a launcher restarted under systemd
starts in a new mount namespace without its mounts; loop devices are set up autoclear and go with them).

Why not exec-less: the job's /tmp (bubblewrap's tmpfs) allows exec anyway, so ``noexec`` here would stop
nothing while breaking jobs that run a program they ship or build.

All of this needs root (CAP_SYS_ADMIN for mount, the loop devices): only the launcher calls it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qrad_agent.jobs.tree import remove_tree, remove_tree_at, usage

IMAGE_NAME = "work.img"
MOUNT_OPTIONS = "loop,nodev,nosuid,noatime"
BLOCK = 4096
INODE_BYTES = 256
RESERVED_INODES = 11
"""ext4's inodes 1..10 are reserved and 11 is lost+found (removed after mkfs, so free again)."""
FULL_BYTES = 64 * 1024
"""Free space below which a job's filesystem counts as full: ext4 refuses a write (ENOSPC) with a few blocks
still free (it keeps them for the extent tree; 28 KiB measured on a 2 MiB image). Each image gets this much
on top of the job's limit, so a job flagged full has used at least its ``output_mb``."""
TOOL_TIMEOUT_S = 120.0
JOURNAL_FROM = 16 << 20
"""Images for this many free bytes or more get a 4 MiB journal (ext4's smallest at 4 KiB blocks); smaller
ones none (a power cut may then need an e2fsck before a result is read)."""


class JobFsError(OSError):
    """The job's filesystem could not be made, mounted or removed; the message says which step and why."""


@dataclass(frozen=True)
class FsLimits:
    """A mounted job filesystem: free ``bytes`` and ``inodes`` for the job, as statvfs(2) reports them."""

    bytes: int
    inodes: int


def unavailable_reason(probe_dir: Path) -> str | None:
    """Why per-job filesystems cannot be made here (not root, no loop device, no mkfs.ext4 or ext4, the
    mount refused), or None. Tries the whole thing once on a 1 MiB image under ``probe_dir``."""
    if os.geteuid() != 0:
        return "not root (mount needs CAP_SYS_ADMIN)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (no loop devices)"
    missing = [t for t in ("mkfs.ext4", "mount", "umount") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: e2fsprogs, mount)"
    try:
        with open("/proc/filesystems") as f:
            if "ext4" not in f.read().split():
                return "the kernel has no ext4"
    except OSError as exc:
        return f"/proc/filesystems unreadable: {exc}"
    probe_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fs-probe-", dir=probe_dir) as tmp:
        image, mnt = Path(tmp) / "probe.img", Path(tmp) / "mnt"
        mnt.mkdir()
        try:
            _make_image(image, 1 << 20, 64, None)
            _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(mnt)])
            _run(["umount", str(mnt)])
        except JobFsError as exc:
            return str(exc)
    return None


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JobFsError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise JobFsError(f"{argv[0]} exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}")


def _make_image(image: Path, size: int, inodes: int, source: Path | None, journal: bool = False) -> None:
    """A new file (a new inode) each time: a loop device of the last measuring mount may still be attached to
    the old one (autoclear detaches it after the unmount, not at once), and mount(8) would reuse that device,
    page cache and all, for a file it takes to be the same: "group descriptors corrupted"."""
    image.unlink(missing_ok=True)
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    argv = ["mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-I", str(INODE_BYTES), "-m", "0", "-N", str(inodes),
            "-O", "^resize_inode", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0"]
    argv += ["-J", "size=4"] if journal else ["-O", "^has_journal"]
    if source is not None:
        argv += ["-d", str(source)]
    _run([*argv, str(image)])


def limits(mount: Path) -> FsLimits:
    st = os.statvfs(mount)
    return FsLimits(st.f_bavail * st.f_frsize, st.f_favail)


def is_mounted(work: Path) -> bool:
    return os.path.ismount(work)


def create(job_dir: Path, output_bytes: int, output_inodes: int) -> FsLimits:
    """Make, fill and mount the job's filesystem on ``job_dir/work`` (holding the bundle as the agent
    staged it); the bundle's files are then only in the image. Idempotent: an image already there is
    mounted (again) as it is. Raises JobFsError/OSError."""
    work, image = job_dir / "work", job_dir / IMAGE_NAME
    if image.exists():
        return ensure_mounted(job_dir)
    bundle = usage(work)
    want_bytes = bundle.allocated_bytes + output_bytes + FULL_BYTES
    inodes = bundle.inodes + output_inodes + RESERVED_INODES
    tmp_image, probe = job_dir / f".{IMAGE_NAME}.tmp", job_dir / ".fs-measure"
    size = _round(want_bytes + inodes * INODE_BYTES + (1 << 20) + want_bytes // 50)
    tolerance = max(16 << 10, want_bytes // 400)
    probe.mkdir(mode=0o700, exist_ok=True)
    try:
        free = 0
        for _ in range(6):  # ext4's overhead (journal, tables, reserved clusters) is measured, not guessed
            try:
                _make_image(tmp_image, size, inodes, work, journal=want_bytes >= JOURNAL_FROM)
            except JobFsError:  # too small for its tables and journal: grow
                size = _round(size * 5 // 4 + (1 << 20))
                continue
            _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(tmp_image), str(probe)])
            try:
                os.rmdir(probe / "lost+found")
                free = limits(probe).bytes
            finally:
                _run(["umount", str(probe)])
            if want_bytes <= free <= want_bytes + tolerance:
                break
            size = _round(size + (want_bytes - free) * (51 if free < want_bytes else 50) // 50 + BLOCK)
        if free < want_bytes:
            raise JobFsError(f"no image size found giving {want_bytes} free bytes")
        os.rename(tmp_image, image)
    finally:
        tmp_image.unlink(missing_ok=True)
        os.rmdir(probe)
    return ensure_mounted(job_dir)


def _round(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def ensure_mounted(job_dir: Path) -> FsLimits:
    """Mount the job's image on its ``work/`` if it is not mounted; what was left in the directory under
    it (a bundle copied into the image before a crash) is deleted first."""
    work, image = job_dir / "work", job_dir / IMAGE_NAME
    if not is_mounted(work):
        if not image.is_file() or image.is_symlink():
            raise JobFsError(f"{image}: no job image")
        work.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name in os.listdir(fd):
                remove_tree_at(fd, name)
        finally:
            os.close(fd)
        _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(work)])
    return limits(work)


def destroy(job_dir: Path) -> bool:
    """Unmount the job's filesystem and delete its image; False when it had none. Raises JobFsError."""
    work, image = job_dir / "work", job_dir / IMAGE_NAME
    had = image.exists() or is_mounted(work)
    if is_mounted(work):
        umount(work)
    remove_tree(job_dir / f".{IMAGE_NAME}.tmp")
    image.unlink(missing_ok=True)
    return had


def umount(path: Path) -> None:
    """Unmount; a busy mount (a process still in it) is detached lazily and goes when it is let go."""
    try:
        _run(["umount", str(path)])
    except JobFsError:
        _run(["umount", "-l", str(path)])


def mounts_under(root: Path) -> list[Path]:
    """Mount points strictly under ``root`` in this mount namespace (/proc/self/mountinfo), deepest first;
    a mount point whose directory was deleted is listed with its " (deleted)" suffix cut."""
    prefix = os.path.realpath(root).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = _unescape(fields[4])
            if point.endswith("//deleted"):
                point = point[: -len("//deleted")]
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unescape(raw: bytes) -> str:
    """A mountinfo path: octal escapes (\\040 for a space) undone."""
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def sweep(jobs_root: Path) -> list[str]:
    """Unmount what a crash left: every mount under ``jobs_root`` that is not the ``work/`` of a job
    directory holding its image (a job deleted or being deleted, a half-made image's measuring mount).
    Returns the mount points let go; a kept job's image stays (mounted or not). Leftover probe directories
    of `unavailable_reason` are deleted."""
    gone = []
    for point in mounts_under(jobs_root):
        job_dir = point.parent
        kept = (point.name == "work" and job_dir.parent == Path(os.path.realpath(jobs_root))
                and not job_dir.name.startswith(".") and (job_dir / IMAGE_NAME).is_file())
        if kept:
            continue
        try:
            umount(point)
            gone.append(str(point))
        except JobFsError:
            pass
    for probe in Path(jobs_root).glob(".fs-probe-*"):  # a probe a crash interrupted (unmounted above)
        remove_tree(probe)
    return gone
