"""Stopping a child process and everything it started (its process group)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

__all__ = ["STOP_GRACE", "exited", "signal_group", "stop_process_group"]

STOP_GRACE = 2.0


async def stop_process_group(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
    """Stop a child and every process of its group (it leads one: ``start_new_session``).

    Spec order for the child: close stdin, wait, SIGTERM, wait; then SIGKILL for the
    whole group, so that grandchildren that outlive the child die too.
    """
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(exited(proc), grace)
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(exited(proc), grace)
    signal_group(proc.pid, signal.SIGKILL)

    async def gone() -> None:
        await exited(proc)
        # SIGKILL lands asynchronously: return once nothing of the group runs.
        # No event tells when another process's children die: poll, bounded by grace.
        while _group_runs(proc.pid):  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gone(), grace)


async def exited(proc: asyncio.subprocess.Process) -> None:
    """Return when the child has exited.

    Not ``proc.wait()``: asyncio's waits for the pipes to close too, which a grandchild
    holding the server's stdout can put off for ever. A pidfd says it at once (Linux);
    elsewhere, the return code is polled.
    """
    if proc.returncode is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        while proc.returncode is None:  # noqa: ASYNC110 - no event without a pidfd
            await asyncio.sleep(0.05)
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _group_runs(pgid: int) -> bool:
    """Does any process of group ``pgid`` still run? Zombies (waiting for their parent
    to reap them) run nothing; where ``/proc`` is missing, trust the SIGKILL."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return False
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
