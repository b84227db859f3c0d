"""A job's directory tree walked as hostile input: no recursion, directory descriptors, a depth bound.

A job can nest directories thousands of levels deep (paths far past PATH_MAX), name files with any bytes but
'/' and NUL, make sparse or preallocated files, hard links and millions of empty files. Python's recursive
walkers (os.fwalk, Path.rglob, shutil.rmtree) raise RecursionError on such a tree, and st_size misses
preallocated blocks and empty inodes. Here:

- `TreeWalk` visits entries depth first with an explicit stack of directory descriptors (one per level,
  so at most ``max_depth`` open), never following a symbolic link, and does not enter a directory at
  ``max_depth``: it sets ``too_deep`` instead. Names are kept as bytes.
- `usage` counts what the tree really takes: allocated blocks (st_blocks x 512 bytes, each inode once)
  and inodes, directories included.
- `remove_tree` deletes a tree of any depth with three descriptors: it moves each grandchild directory up
  into the root before removing its parent, so nothing ever descends more than two levels.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_DEPTH = 64
"""Levels of directories a job's output may have (the bundle's too); deeper ones are not walked, and a job
that makes them is stopped. 64 open descriptors at most per walk."""
BLOCK_BYTES = 512
"""st_blocks is counted in 512-byte units whatever the filesystem's block size (POSIX, stat(2))."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """One entry of a walk. ``dir_fd`` and ``name`` address it (valid only until the walk moves on)."""

    rel: bytes  # path from the walk's root, b"/"-separated
    name: str  # its name in its directory (surrogate-escaped str, usable with dir_fd)
    dir_fd: int
    st: os.stat_result
    depth: int  # 1 for an entry directly in the root


class TreeWalk:
    """Depth-first, sorted walk of the entries under ``root`` (not ``root`` itself); see the module doc.

    ``too_deep`` becomes True when a directory at ``max_depth`` was left unentered; ``errors`` counts
    entries that vanished or could not be opened (a running job changes its tree under the walk)."""

    def __init__(self, root: Path | str | int, max_depth: int = MAX_DEPTH) -> None:
        """``root``: a path, or a directory descriptor (duplicated: the caller keeps and closes its own)."""
        self.root = root
        self.max_depth = max_depth
        self.too_deep = False
        self.errors = 0

    def __iter__(self) -> Iterator[Entry]:
        root_fd = os.dup(self.root) if isinstance(self.root, int) else os.open(self.root, _DIR_FLAGS)
        stack: list[tuple[int, bytes, int, Iterator[str]]] = []
        try:
            stack.append((root_fd, b"", 0, iter(sorted(os.listdir(root_fd)))))
        except OSError:
            os.close(root_fd)
            raise
        try:
            while stack:
                fd, prefix, depth, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    os.close(fd)
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError:
                    self.errors += 1
                    continue
                rel = prefix + os.fsencode(name)
                yield Entry(rel, name, fd, st, depth + 1)
                if not stat.S_ISDIR(st.st_mode):
                    continue
                if depth + 1 >= self.max_depth:
                    self.too_deep = True
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    self.errors += 1
                    continue
                try:
                    children = iter(sorted(os.listdir(child)))
                except OSError:
                    os.close(child)
                    self.errors += 1
                    continue
                stack.append((child, rel + b"/", depth + 1, children))
        finally:
            for fd, *_ in stack:
                os.close(fd)


@dataclass(frozen=True)
class TreeUsage:
    """What a tree takes on its filesystem: ``allocated_bytes`` (st_blocks x 512, every inode once, the root
    included), ``inodes`` (files, directories, links...), ``too_deep`` (see `TreeWalk`)."""

    allocated_bytes: int = 0
    inodes: int = 0
    too_deep: bool = False
    fs_free_bytes: int | None = None  # on a job's own filesystem (jobfs.py): what is left for it (statvfs)
    fs_free_inodes: int | None = None


def usage(root: Path | str, max_depth: int = MAX_DEPTH) -> TreeUsage:
    """Allocated bytes and inodes of ``root`` and everything under it down to ``max_depth``.

    Raises OSError when ``root`` cannot be opened."""
    root_fd = os.open(root, _DIR_FLAGS)
    allocated, inodes = os.fstat(root_fd).st_blocks * BLOCK_BYTES, 1
    linked: set[int] = set()
    too_deep = False
    # TreeWalk's depth-first walk (one level open at a time), unsorted and through scandir: it runs at
    # every poll of a running job, so it keeps per-entry work to one fstatat
    stack: list[tuple[int, Iterator[os.DirEntry[str]], int]] = []
    try:
        stack.append((root_fd, os.scandir(root_fd), 0))
    except OSError:
        os.close(root_fd)
        raise
    try:
        while stack:
            fd, entries, depth = stack[-1]
            try:
                entry = next(entries, None)
            except OSError:
                entry = None
            if entry is None:
                stack.pop()
                entries.close()  # type: ignore[attr-defined]
                os.close(fd)
                continue
            try:
                s = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(s.st_mode)
            if s.st_nlink > 1 and not is_dir:
                if s.st_ino in linked:
                    continue
                linked.add(s.st_ino)
            allocated += s.st_blocks * BLOCK_BYTES
            inodes += 1
            if not is_dir:
                continue
            if depth + 1 >= max_depth:
                too_deep = True
                continue
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                stack.append((child, os.scandir(child), depth + 1))
            except OSError:
                os.close(child)
    finally:
        for fd, entries, _ in stack:
            entries.close()  # type: ignore[attr-defined]
            os.close(fd)
    return TreeUsage(allocated, inodes, too_deep)


def file_usage(path: Path) -> int:
    """Allocated bytes of one file (0 when it does not exist)."""
    try:
        return os.stat(path, follow_symlinks=False).st_blocks * BLOCK_BYTES
    except FileNotFoundError:
        return 0


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a file or a directory tree of any depth) without following symbolic links.

    Missing is fine. Raises OSError when something cannot be removed (permissions, a read-only mount)."""
    try:
        parent_fd = os.open(path.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        remove_tree_at(parent_fd, path.name)
    finally:
        os.close(parent_fd)


def remove_tree_at(parent_fd: int, name: str) -> None:
    """Delete the entry ``name`` of the directory ``parent_fd`` and everything under it (see `remove_tree`)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    root_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    counter = itertools.count()
    try:
        while True:
            names = os.listdir(root_fd)
            if not names:
                break
            for child in names:
                _empty_child(root_fd, child, counter)
    finally:
        os.close(root_fd)
    os.rmdir(name, dir_fd=parent_fd)


def _empty_child(root_fd: int, name: str, counter: itertools.count) -> None:
    """Remove ``name`` from ``root_fd``: a file at once; a directory after its files are unlinked and its
    subdirectories moved up into ``root_fd`` (removed by a later pass)."""
    try:
        st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=root_fd)
        return
    try:
        os.rmdir(name, dir_fd=root_fd)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    child_fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    try:
        os.fchmod(child_fd, stat.S_IMODE(os.fstat(child_fd).st_mode) | stat.S_IRWXU)
        for grandchild in os.listdir(child_fd):
            gst = os.stat(grandchild, dir_fd=child_fd, follow_symlinks=False)
            if not stat.S_ISDIR(gst.st_mode):
                os.unlink(grandchild, dir_fd=child_fd)
                continue
            while True:  # a unique name in the root; a job may have made one of ours already
                target = f".qrad-rm-{next(counter)}"
                try:
                    os.stat(target, dir_fd=root_fd, follow_symlinks=False)
                except FileNotFoundError:
                    break
            os.rename(grandchild, target, src_dir_fd=child_fd, dst_dir_fd=root_fd)
    finally:
        os.close(child_fd)
    os.rmdir(name, dir_fd=root_fd)
