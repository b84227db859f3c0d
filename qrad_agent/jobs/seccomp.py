"""The jobs' seccomp filter, compiled here to classic BPF (no libseccomp in the venv), for bwrap --seccomp.

Program (struct sock_filter, kernel Documentation/userspace-api/seccomp_filter.rst, linux/filter.h):
a foreign architecture is killed; on x86-64 the x32 ABI (nr >= 0x40000000) is refused; each denied call
returns EPERM; ``clone`` with a namespace flag returns EPERM; ``clone3`` returns ENOSYS (its flags are
behind a pointer BPF cannot read, so libc falls back to ``clone``, as in Docker's and systemd's filters).
Everything else is allowed: an HPC job needs most of the kernel, and the namespaces do the isolation.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# linux/filter.h and linux/seccomp.h
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LO = 0, 4, 16  # struct seccomp_data, little-endian arg low word
X32_SYSCALL_BIT = 0x40000000
CLONE_NS_FLAGS = 0x7E020080
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME."""

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
    "move_mount", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "quotactl", "quotactl_fd", "acct", "settimeofday", "clock_settime", "adjtimex", "sethostname",
    "setdomainname", "syslog", "vhangup", "lookup_dcookie", "move_pages",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # x86-64 only
    "iopl", "ioperm", "uselib", "_sysctl", "create_module", "get_kernel_syms", "query_module", "nfsservctl",
)

ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {  # AUDIT_ARCH_X86_64; asm/unistd_64.h
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
        "process_madvise": 440, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "open_tree": 428, "move_mount": 429,
        "mount_setattr": 442, "open_by_handle_at": 304, "name_to_handle_at": 303, "unshare": 272,
        "setns": 308, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
        "quotactl": 179, "quotactl_fd": 443, "acct": 163, "settimeofday": 164, "clock_settime": 227,
        "adjtimex": 159, "sethostname": 170, "setdomainname": 171, "syslog": 103, "vhangup": 153,
        "lookup_dcookie": 212, "move_pages": 279, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "iopl": 172, "ioperm": 173, "uselib": 134, "_sysctl": 156,
        "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "nfsservctl": 180,
        "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {  # AUDIT_ARCH_AARCH64; asm-generic/unistd.h
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438,
        "process_madvise": 440, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "open_tree": 428, "move_mount": 429,
        "mount_setattr": 442, "open_by_handle_at": 265, "name_to_handle_at": 264, "unshare": 97,
        "setns": 268, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217, "request_key": 218,
        "quotactl": 60, "quotactl_fd": 443, "acct": 89, "settimeofday": 170, "clock_settime": 112,
        "adjtimex": 171, "sethostname": 161, "setdomainname": 162, "syslog": 116, "vhangup": 58,
        "lookup_dcookie": 18, "move_pages": 239, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "nfsservctl": 42, "clone": 220, "clone3": 435}),
}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(machine: str | None = None) -> bytes:
    """The compiled filter for ``machine`` (default: this one). Raises ValueError for an unknown arch."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise ValueError(f"no seccomp syscall table for {machine!r}; known: {sorted(ARCHES)}")
    audit_arch, numbers = ARCHES[machine]
    denied = sorted({numbers[name] for name in DENIED if name in numbers})
    # Tail, in order: [allow] [clone: ld arg0, jset -> eperm, allow] [eperm] [enosys]
    body: list[tuple[int, int, str | None]] = []  # (code, k, jump-true label)
    if machine == "x86_64":
        body.append((_JGE_K, X32_SYSCALL_BIT, "eperm"))
    body += [(_JEQ_K, nr, "eperm") for nr in denied]
    body += [(_JEQ_K, numbers["clone3"], "enosys"), (_JEQ_K, numbers["clone"], "clone")]
    head = [_insn(_LD_W_ABS, _OFF_ARCH), _insn(_JEQ_K, audit_arch, jt=1), _insn(_RET_K, RET_KILL_PROCESS),
            _insn(_LD_W_ABS, _OFF_NR)]
    base = len(head)
    labels = {"clone": base + len(body) + 1}
    labels["eperm"] = labels["clone"] + 3
    labels["enosys"] = labels["eperm"] + 1
    program = list(head)
    for pc, (code, k, target) in enumerate(body, start=base):
        program.append(_insn(code, k, jt=labels[target] - pc - 1))  # type: ignore[index]
    program += [_insn(_RET_K, RET_ALLOW),
                _insn(_LD_W_ABS, _OFF_ARG0_LO), _insn(_JSET_K, CLONE_NS_FLAGS, jt=1), _insn(_RET_K, RET_ALLOW),
                _insn(_RET_K, RET_ERRNO | errno.EPERM), _insn(_RET_K, RET_ERRNO | errno.ENOSYS)]
    if max(labels.values()) - base > 255:
        raise ValueError("filter too long for 8-bit jumps")
    return b"".join(program)


def filter_fd(program: bytes) -> int:
    """A sealed-size memfd holding ``program``, positioned at 0, for bwrap ``--seccomp FD``."""
    fd = os.memfd_create("qrad-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
