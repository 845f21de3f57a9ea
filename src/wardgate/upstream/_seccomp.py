"""A seccomp filter for bubblewrap sandboxes (classic BPF, built here: no libseccomp).

It refuses, with ``EPERM``, the system calls a tool server has no business making and
that widen the kernel's attack surface or reach other processes: ``ptrace``,
``process_vm_readv/writev``, mounting, namespaces (``unshare``, ``setns``), module and
kexec loading, ``bpf``, ``perf_event_open``, ``userfaultfd``, keyrings, ``io_uring``,
``open_by_handle_at``, swap, reboot, clock and host name changes; ``clone3`` answers
``ENOSYS`` (so libc falls back to ``clone``); any other architecture's system calls
(and the x32 ABI) kill the process. x86_64 only; elsewhere :func:`filter_bytes` is None.
"""

from __future__ import annotations

import errno
import platform
import struct
from functools import cache

__all__ = ["filter_bytes"]

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06

#: x86_64 numbers.
_DENIED = {
    "ptrace": 101, "syslog": 103, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pivot_root": 155, "chroot": 161,
}  # fmt: skip
_ENOSYS = {"clone3": 435}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


@cache
def filter_bytes() -> bytes | None:
    """The filter program for ``bwrap --seccomp FD``, or None off x86_64 (built once)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    rules = [(nr, _RET_ERRNO | errno.EPERM) for nr in sorted(_DENIED.values())]
    rules += [(nr, _RET_ERRNO | errno.ENOSYS) for nr in _ENOSYS.values()]
    prog = [
        _insn(_LD_W_ABS, 0, 0, 4),  # arch
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, 0),  # nr
        _insn(_JGE_K, 0, 1, _X32_BIT),
        _insn(_RET_K, 0, 0, _RET_KILL_PROCESS),
    ]
    for nr, action in rules:
        prog += [_insn(_JEQ_K, 0, 1, nr), _insn(_RET_K, 0, 0, action)]
    prog.append(_insn(_RET_K, 0, 0, _RET_ALLOW))
    return b"".join(prog)
