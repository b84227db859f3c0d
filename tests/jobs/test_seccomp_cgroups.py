"""The BPF filter applied bare (no bwrap), and the cgroup v2 code path on a fake cgroup2 tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_agent.jobs.seccomp import build_filter

APPLY = r'''
import ctypes, errno, os, sys
prog = open(sys.argv[1], "rb").read()
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(prog, len(prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0                      # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()   # SECCOMP_MODE_FILTER
def call(nr, *a):
    r = libc.syscall(nr, *a)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
pid = os.fork()
if pid == 0:
    os._exit(7)
print(call(101, 0, 0, 0, 0), call(272, 0x10000000), call(435, 0, 0), os.waitpid(pid, 0)[1] >> 8, os.getpid() > 0)
'''


def test_filter_denies_and_allows(tmp_path):
    if __import__("platform").machine() != "x86_64":
        return
    prog = tmp_path / "filter.bpf"
    prog.write_bytes(build_filter())
    out = subprocess.run([sys.executable, "-c", APPLY, str(prog)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["EPERM", "EPERM", "ENOSYS", "7", "True"]


def test_filter_builds_for_both_architectures():
    assert len(build_filter("x86_64")) % 8 == 0 and len(build_filter("aarch64")) % 8 == 0


def _fake_v2(root: Path) -> Path:
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    parent = root / "qrad-jobs"
    parent.mkdir()
    for name in ("cgroup.subtree_control", "cpu.max", "cgroup.freeze", "cgroup.events"):
        (parent / name).write_text("")
    return parent


def test_v2_tree_writes(tmp_path):
    parent = _fake_v2(tmp_path)
    tree = JobsCgroupTree(parent)
    assert tree.version == 2 and tree.cpu_dir == parent
    tree.setup()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    tree.set_quota(0.5, 4)
    assert (parent / "cpu.max").read_text() == "200000 100000"
    tree.freeze()
    assert (parent / "cgroup.freeze").read_text() == "1"
    tree.thaw()
    assert (parent / "cgroup.freeze").read_text() == "0"
    job = tree.job("a")
    job.dirs["cpu"].mkdir()
    job.set_limits(cores=2, memory_bytes=64 << 20, pids=32)
    assert (job.dirs["cpu"] / "cpu.max").read_text() == "200000 100000"
    assert (job.dirs["cpu"] / "memory.max").read_text() == str(64 << 20)
    assert (job.dirs["cpu"] / "pids.max").read_text() == "32"
    assert job.procs_files == [parent / "job-a" / "cgroup.procs"]
    (job.dirs["cpu"] / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert job.oom_kills() == 1
