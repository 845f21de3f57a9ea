"""Stdio upstreams: an MCP server run as a child process behind the sandbox seam.

A handshake-era client session gets a process of its own (one sandbox per session).
Stateless requests share a process per *isolation group*
(:mod:`wardgate.routing.isolation`: per tenant by default), started when first needed
and stopped when idle. Every process of an upstream counts against ``max_processes``:
past it, the least recently used idle shared process is stopped to make room, else
the call is refused with :class:`~wardgate.errors.UpstreamBusy`; nothing spawns
without bound.

A process that dies is restarted on the next call (the calls in flight get an error;
a dedicated session replays its ``initialize`` into the new process); one that keeps
dying soon after it starts is restarted with a bounded exponential backoff
(:mod:`wardgate.upstream.restarts`), and calls meanwhile get an error at once. One that
is alive but stops answering is found by a ``ping`` after a timeout, or by a write to
its stdin that does not drain, and is killed. Stopping a process stops its whole
process group, so its own children go with it.

``start = "eager"`` keeps one spare process started ahead of need (it gets the next
session's ``initialize``, and is then replaced); ``per_call`` sends the listed tools'
``tools/call`` to a fresh sandbox each (:mod:`wardgate.upstream.warm_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from wardgate.config.sandboxing import PerCallSettings
from wardgate.errors import UpstreamBusy, UpstreamError
from wardgate.routing.isolation import IsolationKey
from wardgate.upstream._decode import decode_channel_message
from wardgate.upstream._pending import CallerView
from wardgate.upstream._process import STOP_GRACE, exited, signal_group, stop_process_group
from wardgate.upstream.channel import ChannelSession
from wardgate.upstream.per_call import covered, follow_up
from wardgate.upstream.restarts import RestartBackoff
from wardgate.upstream.sandbox import Sandbox
from wardgate.upstream.seam import Reply
from wardgate.upstream.spare import Spare
from wardgate.upstream.warm_pool import WarmPool
from wardgate.wire.jsonrpc import DEFAULT_MAX_JSON_DEPTH, JsonObject

__all__ = ["StdioSession", "StdioUpstream"]

log = logging.getLogger("wardgate.upstream.stdio")


class StdioUpstream:
    """A configured stdio server: how to start it, how many processes it may have and
    how long a request or an idle process may last."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        sandbox: Sandbox,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        request_timeout: float = 300.0,
        max_processes: int = 16,
        idle_seconds: float = 300.0,
        health_timeout: float = 10.0,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        start: Literal["lazy", "eager"] = "lazy",
        per_call: PerCallSettings | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``backoff``: the first and the longest wait before restarting a process that
        keeps crashing (docs/sandbox.md)."""
        self.name = name
        self.max_json_depth = max_json_depth
        self.argv = tuple(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        self.sandbox = sandbox
        self.request_timeout = request_timeout
        self.max_processes = max_processes
        self.idle_seconds = idle_seconds
        self.health_timeout = health_timeout
        self._clock = clock
        #: isolation group -> its shared process, least recently used first
        self._pool: OrderedDict[str, StdioSession] = OrderedDict()
        self._sessions: set[StdioSession] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._started = False
        self.start_mode = start
        self.backoff = backoff
        #: A process started ahead of need (``start = "eager"``), no message sent yet.
        self._spare = Spare(name, lambda: self.sandbox.spawn(self.argv, self.env, self.cwd))
        self.warm_pool: WarmPool | None = None
        if per_call is not None:
            self.warm_pool = WarmPool(
                name,
                lambda: StdioSession(self, dedicated=True, exclusive=True, per_call_member=True),
                per_call,
                request_timeout=request_timeout,
            )
        self.serials = itertools.count(1)

    @property
    def processes(self) -> int:
        """Slots in use: shared processes and dedicated sessions."""
        return len(self._pool) + len(self._sessions)

    async def start(self) -> None:
        """Raises:
        UpstreamError: ``start = "eager"`` and the server did not start.
        """
        self._started = True
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())
        if self.start_mode == "eager":
            try:
                if not await self._spare.start():
                    raise UpstreamError(f"upstream {self.name}: eager start failed")
                if self.warm_pool is not None:
                    await self.warm_pool.fill()
            except BaseException:
                await self.aclose()
                raise

    async def aclose(self) -> None:
        self._started = False
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self._spare.aclose()
        if self.warm_pool is not None:
            await self.warm_pool.aclose()
        sessions = [*self._sessions, *self._pool.values()]
        self._pool.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)
        self._sessions.clear()

    async def open_session(self) -> StdioSession:
        """A process of its own for one handshake-era client session.

        Raises:
            UpstreamBusy: the upstream has ``max_processes`` processes, none idle.
        """
        self._make_room()
        session = StdioSession(self, dedicated=True, exclusive=True)
        self._sessions.add(session)
        return session

    @property
    def spare_pid(self) -> int | None:
        """The spare process waiting for the next session (``start = "eager"``)."""
        return self._spare.pid

    async def spawn(self) -> asyncio.subprocess.Process:
        """A process for a session: the spare if one waits, else a fresh one."""
        proc = await self._spare.take()
        return proc or await self.sandbox.spawn(self.argv, self.env, self.cwd)

    def shared_session(self, key: str = "") -> CallerView:
        """The caller's view of its isolation group's shared process.

        Raises:
            UpstreamError: the upstream is not started.
            UpstreamBusy: a new process is needed and no slot can be freed.
        """
        if not self._started:
            raise UpstreamError(f"upstream {self.name} is not started")
        ik = IsolationKey.parse(key)
        session = self._pool.get(ik.group)
        if session is None or not session.alive:
            self._pool.pop(ik.group, None)
            self._make_room()
            session = StdioSession(self, dedicated=False, exclusive=ik.exclusive)
            self._pool[ik.group] = session
        self._pool.move_to_end(ik.group)
        session.touch()
        return session.caller(ik.caller)

    def _make_room(self) -> None:
        if self.processes < self.max_processes:
            return
        for group, session in self._pool.items():  # least recently used first
            if session.idle:
                del self._pool[group]
                log.info("upstream %s: stopping an idle process to make room", self.name)
                self._stop_later(session)
                return
        log.warning("upstream %s: all %d processes busy", self.name, self.max_processes)
        raise UpstreamBusy(f"upstream {self.name} has {self.max_processes} processes, none idle")

    def _stop_later(self, session: StdioSession) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def reap_idle(self) -> int:
        """Stop shared processes idle for ``idle_seconds``; how many were stopped."""
        now = self._clock()
        stale = [
            group
            for group, s in self._pool.items()
            if s.idle and now - s.last_used >= self.idle_seconds
        ]
        for group in stale:
            self._stop_later(self._pool.pop(group))
        return len(stale)

    async def _reap_forever(self) -> None:
        interval = max(0.05, min(self.idle_seconds / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            try:
                self.reap_idle()
            except Exception:  # the reaper must outlive any one bad round
                log.exception("upstream %s: reaping idle processes failed", self.name)

    def forget(self, session: StdioSession) -> None:
        self._sessions.discard(session)
        for group, pooled in list(self._pool.items()):
            if pooled is session:
                del self._pool[group]


class StdioSession(ChannelSession):
    """One child process behind the sandbox seam.

    ``per_call_member``: the session is a per-call sandbox of the warm pool; it serves
    its one call itself. Other sessions of an upstream with ``per_call`` send covered
    ``tools/call`` requests to the pool.
    """

    def __init__(
        self,
        upstream: StdioUpstream,
        *,
        dedicated: bool = True,
        exclusive: bool = True,
        per_call_member: bool = False,
    ) -> None:
        super().__init__(
            upstream.name,
            upstream.request_timeout,
            dedicated=dedicated,
            exclusive=exclusive,
            health_timeout=upstream.health_timeout,
        )
        self._up = upstream
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when stdout closes: the process is gone even before it is reaped.
        self._eof = True
        self._abort_reason: str | None = None
        self.last_used = upstream._clock()
        initial, maximum = upstream.backoff
        self._backoff = RestartBackoff(initial=initial, maximum=maximum, clock=upstream._clock)
        self._pool = None if per_call_member else upstream.warm_pool
        self._serial = next(upstream.serials)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The sandbox's outermost process (None before the first start)."""
        return self._proc

    @property
    def running(self) -> bool:
        return self._running()

    def _owner(self, caller: str) -> str:
        return f"{self._serial}\n{caller}"

    async def _request(self, caller: str, message: JsonObject) -> Reply:
        pool = self._pool
        if pool is not None and covered(pool.settings, message):
            reply, _ = await pool.call(self._owner(caller), message)
            return reply
        return await super()._request(caller, message)

    async def _post(self, caller: str, message: JsonObject) -> int:
        pool = self._pool
        lease = follow_up(pool, self._owner(caller), message) if pool is not None else None
        if lease is not None:
            return await lease.session.post(message, {})
        return await super()._post(caller, message)

    def touch(self) -> None:
        self.last_used = self._up._clock()

    def _running(self) -> bool:
        proc = self._proc
        return proc is not None and not self._eof and proc.returncode is None

    async def _settle(self) -> None:
        # The old reader fails the old process's calls; it must be done before a new
        # process starts, or it would fail the new one's.
        reader = self._tasks[0] if self._tasks else None
        if reader is not None and not reader.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), STOP_GRACE)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _connect(self) -> None:
        # A server that keeps dying soon after it starts waits before the next start;
        # the call that needs it meanwhile fails at once (UpstreamError).
        self._backoff.admit(self._up.name)
        try:
            self._proc = await self._up.spawn()
        except OSError as exc:
            raise UpstreamError(f"cannot start upstream {self._up.name}: {exc}") from None
        proc = self._proc
        self._eof = False
        self._abort_reason = None
        reader = asyncio.create_task(self._read_stdout(proc))
        self._tasks = [
            reader,
            asyncio.create_task(self._read_stderr(proc)),
            asyncio.create_task(self._watch_exit(proc, reader)),
        ]

    async def _watch_exit(
        self, proc: asyncio.subprocess.Process, reader: asyncio.Task[None]
    ) -> None:
        """When the server exits, stop what is left of its group: a child that kept the
        server's stdout open would otherwise hold the reader (and every call) forever."""
        await exited(proc)
        if not self._closed:
            await stop_process_group(proc, grace=0.5)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(reader), STOP_GRACE)
        reader.cancel()  # a descendant outside the group still holds stdout

    async def _send(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None or self._eof:
            raise UpstreamError(f"upstream {self._up.name} is not running")
        try:
            proc.stdin.write(data + b"\n")
            transport = proc.stdin.transport
            if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
                # A server that stops reading stdin would hold every writer here forever.
                await asyncio.wait_for(proc.stdin.drain(), self._health.timeout)
            else:
                await proc.stdin.drain()  # returns at once; raises if the pipe closed
        except TimeoutError:
            await self._abort("upstream stopped reading its stdin")
            raise UpstreamError(f"upstream {self._up.name} stopped reading stdin") from None
        except (ConnectionError, RuntimeError) as exc:
            raise UpstreamError(f"upstream {self._up.name} stdin closed: {exc!r}") from None

    async def _abort(self, reason: str) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._abort_reason = reason
        signal_group(proc.pid, signal.SIGKILL)

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:
                    log.error("upstream %s wrote an over-long line; stopping it", self._up.name)
                    signal_group(proc.pid, signal.SIGKILL)
                    break
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                # The spec forbids non-MCP output on stdout: it is dropped, never relayed.
                message = decode_channel_message(line, self._up.max_json_depth, self._up.name)
                if message is not None:
                    self._dispatch(message)
        finally:
            self._eof = True
            reason = self._abort_reason or "exited"
            self._fail_pending(UpstreamError(f"upstream {self._up.name} {reason} mid-call"))
            if proc.returncode is None:
                # It closed stdout but lives on: useless, stop it (the exit watcher
                # then stops the rest of its group).
                signal_group(proc.pid, signal.SIGKILL)

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(ValueError, ConnectionError):
            async for line in proc.stderr:
                text = line[:2000].decode("utf-8", "replace").rstrip()
                log.debug(
                    "upstream %s stderr: %s", self._up.name, text.encode("unicode_escape").decode()
                )

    async def close(self) -> None:
        """Stop the process and its whole process group; fail the calls in flight."""
        if self._closed:
            return
        self._mark_closed()
        self._up.forget(self)
        proc = self._proc
        if proc is not None:
            await stop_process_group(proc)
        for task in self._tasks:
            task.cancel()
