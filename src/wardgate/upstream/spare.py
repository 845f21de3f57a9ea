"""A stdio server process started ahead of need (``start = "eager"``).

The spare is spawned in its sandbox and sent nothing: the session or isolation group
that takes it sends its own ``initialize``, as to any new process, and a new spare is
started behind it. It has never served anyone, so taking it shares nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from wardgate.upstream._process import stop_process_group

__all__ = ["Spare"]

log = logging.getLogger("wardgate.upstream.stdio")

Spawn = Callable[[], Awaitable[asyncio.subprocess.Process]]


class Spare:
    """At most one waiting process of one upstream, replaced after each take."""

    def __init__(self, name: str, spawn: Spawn) -> None:
        self.name = name
        self._spawn = spawn
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._open = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> bool:
        """Start the first spare; False if it did not start."""
        self._open = True
        await self._make()
        return self._proc is not None

    async def take(self) -> asyncio.subprocess.Process | None:
        """The waiting process if it still runs (a replacement starts behind it)."""
        proc, self._proc = self._proc, None
        if self._open and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._make())
        if proc is not None and proc.returncode is not None:
            await stop_process_group(proc, grace=0)  # died waiting: whatever it left
            return None
        return proc

    async def _make(self) -> None:
        try:
            proc = await self._spawn()
        except OSError as exc:
            log.warning("upstream %s: the spare process did not start: %s", self.name, exc)
            return
        if not self._open or self._proc is not None:
            await stop_process_group(proc, grace=0)
            return
        self._proc = proc

    async def aclose(self) -> None:
        self._open = False
        if self._task is not None:
            # Not cancelled: a spawn cut off mid-way would leave its process running.
            # Closed, the task stops what it starts.
            with contextlib.suppress(Exception):
                await self._task
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop_process_group(proc, grace=0)
