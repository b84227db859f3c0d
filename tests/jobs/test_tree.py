"""jobs/tree.py on trees a job can make: counted as the filesystem counts them, walked and deleted at any
depth and width with a bounded number of descriptors, names kept as bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qrad_agent.jobs.tree import MAX_DEPTH, TreeWalk, remove_tree, usage


def _chain(root: Path, depth: int) -> None:
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def test_usage_counts_blocks_and_inodes_once(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "one").write_bytes(b"x")
    (root / "empty").touch()
    for i in range(20):
        os.link(root / "one", root / f"link{i}")  # one inode, one block, however many names
    with open(root / "sparse", "wb") as f:
        f.truncate(1 << 30)
    u = usage(root)
    assert u.inodes == 4  # root, one, empty, sparse
    block = os.stat(root / "one").st_blocks * 512
    assert block <= u.allocated_bytes < 1 << 20 and not u.too_deep


def test_deep_tree_is_bounded_and_deleted(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    _chain(root, 1500)  # past the interpreter's recursion limit (1000)
    walk = TreeWalk(root)
    entries = list(walk)
    assert walk.too_deep and len(entries) == MAX_DEPTH and max(e.depth for e in entries) == MAX_DEPTH
    assert usage(root).too_deep
    remove_tree(root)
    assert not root.exists()


def test_wide_tree_needs_few_descriptors(tmp_path):
    """300 sibling directories with a child each, walked and deleted under RLIMIT_NOFILE = 32 (a walk holding
    a descriptor per pending directory would run out)."""
    root = tmp_path / "w"
    root.mkdir()
    for i in range(300):
        (root / f"d{i}" / "e").mkdir(parents=True)
    code = ("import resource, sys; from pathlib import Path; from qrad_agent.jobs.tree import usage, remove_tree\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))\n"
            f"u = usage(Path({str(root)!r})); assert u.inodes == 601, u\nremove_tree(Path({str(root)!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not root.exists()


def test_names_are_bytes(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / os.fsdecode(b"bad\xffname")).write_bytes(b"1")
    assert [e.rel for e in TreeWalk(root)] == [b"bad\xffname"]
