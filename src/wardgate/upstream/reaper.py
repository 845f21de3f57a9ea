"""The last sweep at gateway exit: no process started for an upstream outlives it.

Stdio servers are started in a session of their own (``start_new_session=True``), so
each one leads a process group that its own children join. Closing a session stops
the server; whatever it forked may live on. :class:`ProcessGroups` remembers the
groups the gateway's children lead (``note``, called while they are alive, at exit
and on a timer) and, at exit, kills every process still in one of those groups or
sessions, and every descendant of the gateway (``kill``), then waits until /proc
shows none left.

A process that double-forks into a session of its own leaves both: it is found only
because the gateway makes itself a *child subreaper* (``become_subreaper``, Linux
``PR_SET_CHILD_SUBREAPER``), so orphans below it are re-parented to it instead of to
init and stay its descendants. Orphans that exit become its zombies, so
``reap_adopted`` collects them (never a child the event loop is waiting for: only
processes outside the gateway's own group that do not lead a group). Linux only (it
reads /proc); elsewhere it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcStat", "ProcessGroups", "become_subreaper", "proc_table"]

log = logging.getLogger("wardgate.upstream.reaper")

_PROC = Path("/proc")
_POLL = 0.02
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False if refused."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the sweep needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int

    @property
    def alive(self) -> bool:
        # A zombie holds no resources but its pid; it is gone for our purposes.
        return self.state not in ("Z", "X")


def _stat(pid: int) -> ProcStat | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = raw.rpartition(")")[2].split()
    try:
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]))
    except (IndexError, ValueError):
        return None


def proc_table() -> list[ProcStat]:
    """Every process /proc shows (empty where there is no /proc)."""
    out = []
    with contextlib.suppress(OSError):
        for entry in _PROC.iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat is not None:
                    out.append(stat)
    return out


class ProcessGroups:
    """The process groups (and sessions) led by this process's children."""

    def __init__(self) -> None:
        self._me = os.getpid()
        self._own = {os.getpgrp(), os.getsid(0)}
        self.groups: set[int] = set()

    def note(self) -> None:
        """Remember the groups of the children alive now; forget groups left empty."""
        table = proc_table()
        for stat in table:
            if stat.ppid == self._me and stat.alive and stat.pgrp not in self._own:
                self.groups.add(stat.pgrp)
        occupied = {s.pgrp for s in table if s.alive} | {s.session for s in table if s.alive}
        self.groups &= occupied

    def members(self) -> list[ProcStat]:
        """Live processes in a remembered group or session, or below this process
        (never this process itself)."""
        table = proc_table()
        children: dict[int, list[int]] = {}
        for stat in table:
            children.setdefault(stat.ppid, []).append(stat.pid)
        below: set[int] = set()
        todo = list(children.get(self._me, ()))
        while todo:
            pid = todo.pop()
            if pid not in below:
                below.add(pid)
                todo.extend(children.get(pid, ()))
        return [
            s
            for s in table
            if s.alive
            and s.pid != self._me
            and (s.pid in below or s.pgrp in self.groups or s.session in self.groups)
        ]

    def reap_adopted(self) -> int:
        """Collect exited orphans re-parented here; returns how many."""
        reaped = 0
        for stat in proc_table():
            if (
                stat.ppid == self._me
                and not stat.alive
                and stat.pid != stat.pgrp  # a spawned server leads its group: not ours to wait
                and stat.pgrp not in self._own  # spawned into our own group: the loop's
            ):
                with contextlib.suppress(ChildProcessError, OSError):
                    if os.waitpid(stat.pid, os.WNOHANG)[0] == stat.pid:
                        reaped += 1
        return reaped

    async def kill(self, within: float = 5.0) -> list[ProcStat]:
        """SIGKILL every member, wait until none is left; returns any that survived."""
        deadline = time.monotonic() + within
        while True:
            for group in self.groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            left = self.members()
            # A member that left its group but kept the session is killed one by one.
            for stat in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(stat.pid, signal.SIGKILL)
            if not left:
                return []
            if time.monotonic() >= deadline:
                log.error(
                    "processes of upstream groups survived the exit sweep: %s",
                    sorted(s.pid for s in left),
                )
                return left
            await asyncio.sleep(_POLL)
