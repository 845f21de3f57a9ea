"""Runs on the HOST as a sandbox's first process, started ahead of need (standalone:
imports nothing of wardgate's; see ``_prelaunch.py``).

Usage: ``python -I -S _launcher.py PARENT_PID CONTROL_FD [--netns] CGROUP_PROCS...``

Off the request path it: dies with the gateway (``PR_SET_PDEATHSIG``); moves itself
into the sandbox's cgroups (a write to ``cgroup.procs`` waits for an RCU grace period,
about 10 ms, which is why it is done ahead); with ``--netns``, enters a network
namespace of its own, new and empty, with loopback up; then writes ``R`` to stderr.
It then waits for its command, ``{"argv": [...], "env": {...}}`` as JSON on
``CONTROL_FD`` up to end of file, and execs it: the sandbox's runner (``bwrap``,
``runsc``) starts inside its limits and namespace from its first instruction, and
everything it forks stays there. End of file without a command: it exits.
"""

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union


def _fail(what: str, err: int) -> None:
    os.write(2, f"wardgate launcher: {what}: {os.strerror(err)}\n".encode())
    os._exit(126)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, got)[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def main() -> None:
    parent, control = int(sys.argv[1]), int(sys.argv[2])
    args = sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) != 0:
        _fail("prctl", ctypes.get_errno())
    if os.getppid() != parent:  # the gateway died before the line above
        os._exit(1)
    netns = args[:1] == ["--netns"]
    me = str(os.getpid()).encode()
    for procs in args[1:] if netns else args:
        try:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, me)
            finally:
                os.close(fd)
        except OSError as e:
            _fail(f"joining {procs}", e.errno or 0)
    if netns:
        if libc.unshare(_CLONE_NEWNET) != 0:
            _fail("unshare(CLONE_NEWNET)", ctypes.get_errno())
        try:
            _loopback_up()
        except OSError as e:
            _fail("loopback up", e.errno or 0)
    os.write(2, b"R")
    chunks = []
    while chunk := os.read(control, 65536):
        chunks.append(chunk)
    os.close(control)
    if not chunks:
        os._exit(0)
    command = json.loads(b"".join(chunks))
    argv = command["argv"]
    try:
        os.execve(argv[0], argv, command["env"])  # noqa: S606 - the runner, by path
    except OSError as e:
        _fail(f"exec {argv[0]}", e.errno or 0)


if __name__ == "__main__":
    main()
