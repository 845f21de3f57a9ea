"""Per-call sandboxes: a fresh sandbox for one ``tools/call``, from a small warm pool.

A pool member is a stdio session already started in its own sandbox and already past
the MCP handshake (``initialize`` and ``notifications/initialized``, sent by the
gateway through :meth:`~wardgate.upstream.channel.ChannelSession.prime`, the same path
a restart replays a client's handshake by). A call pops one (:meth:`WarmPool.call`),
uses it for exactly that call, and the sandbox is then killed with its whole process
tree; nothing of it is ever given to another call. Each pop starts a replacement in
the background once the call is answered, or after ``refill_delay`` at most; a member
that dies while it waits is dropped and replaced.

Bounds: at most ``warm_pool`` members wait, at most ``max_concurrent`` sandboxes run
calls; a call over the cap waits up to ``wait_seconds`` for one to end, then is refused
with :class:`~wardgate.errors.UpstreamBusy`. A pool whose members fail to start backs
off (0.5 s doubling to 30 s) before it tries again; meanwhile a call starts a sandbox
of its own, under the same cap.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from wardgate import __version__
from wardgate.errors import UpstreamBusy, UpstreamError
from wardgate.upstream._process import STOP_GRACE, exited, signal_group
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject
from wardgate.wire.mcp import LATEST_HANDSHAKE_VERSION

if TYPE_CHECKING:
    from wardgate.config.sandboxing import PerCallSettings
    from wardgate.upstream.stdio import StdioSession

__all__ = ["WARM_HANDSHAKE", "Lease", "WarmPool"]

log = logging.getLogger("wardgate.upstream.pool")

#: What the gateway says to a pool member before any call reaches it.
WARM_HANDSHAKE: tuple[JsonObject, ...] = (
    {
        "jsonrpc": "2.0",
        "method": "initialize",
        "params": {
            "protocolVersion": LATEST_HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "wardgate-per-call", "version": __version__},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
)
_BACKOFF_INITIAL = 0.5
#: The longest a taken member's replacement waits for the call to end before it starts.
_REFILL_DELAY = 0.25
_BACKOFF_MAX = 30.0


class Lease:
    """One call's sandbox, from the pool until it is killed."""

    def __init__(self, pool: WarmPool, session: StdioSession, owner: str, call_id: object) -> None:
        self.pool = pool
        self.session = session
        self.owner = owner
        self.call_id = call_id
        self._timer: asyncio.TimerHandle | None = None
        self.ended = False

    def arm(self, seconds: float) -> None:
        """Kill the sandbox after ``seconds`` even if no one ends the call."""
        self._timer = asyncio.get_running_loop().call_later(seconds, self.end)

    def end(self) -> None:
        """The call is over: kill its sandbox (in the background; idempotent)."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        self.pool._retire_lease(self)


class _LeasedEvents:
    """A per-call reply's messages; the sandbox is killed once the answer is through
    (or the caller stops listening)."""

    def __init__(self, events: AsyncIterator[Event], lease: Lease) -> None:
        self._events = events
        self._lease = lease

    def __aiter__(self) -> _LeasedEvents:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._events.__anext__()
        except BaseException:
            # Not at the response itself: the stream ends just after it, and a kill
            # before that would fail the call the server answered.
            self._lease.end()
            raise

    async def aclose(self) -> None:
        closer = getattr(self._events, "aclose", None)
        try:
            if closer is not None:
                await closer()
        finally:
            self._lease.end()


class WarmPool:
    """Started, initialized sandboxes of one upstream, each for one call."""

    def __init__(
        self,
        name: str,
        make: Callable[[], StdioSession],
        settings: PerCallSettings,
        *,
        request_timeout: float,
    ) -> None:
        self.name = name
        self.settings = settings
        self._make = make
        self._timeout = request_timeout
        self._members: deque[StdioSession] = deque()
        self._filling = 0
        self._fill_failures = 0
        self._retry: asyncio.TimerHandle | None = None
        self._refill_timer: asyncio.TimerHandle | None = None
        #: How long a taken member's replacement waits at most for the call to end.
        self.refill_delay = _REFILL_DELAY
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self.leases: set[Lease] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: dict[StdioSession, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._closed = False

    # -- state -------------------------------------------------------------------

    @property
    def ready(self) -> int:
        """Members waiting for a call."""
        return len(self._members)

    @property
    def pids(self) -> list[int]:
        """Process ids of the waiting members (their sandboxes' outermost processes)."""
        return [s.pid for s in self._members if s.pid is not None]

    @property
    def sandboxes(self) -> int:
        """Sandboxes of this pool alive or starting: waiting, filling and in calls."""
        return len(self._members) + self._filling + len(self.leases)

    async def changed(self) -> None:
        """Return at the next change of the waiting members (tests and benches)."""
        self._changed.clear()
        await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()

    # -- filling -------------------------------------------------------------------

    async def fill(self) -> None:
        """Start members until ``warm_pool`` wait (the eager start).

        Raises:
            UpstreamError: a member did not start or did not answer ``initialize``.
        """
        missing = self.settings.warm_pool - len(self._members) - self._filling
        results = await asyncio.gather(
            *(self._add_member() for _ in range(max(0, missing))), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise UpstreamError(f"upstream {self.name}: warm pool did not fill: {result}")

    def refill_soon(self) -> None:
        """Start, in the background, the members the pool is short of."""
        if self._closed or self._retry is not None:
            return
        missing = self.settings.warm_pool - len(self._members) - self._filling
        for _ in range(max(0, missing)):
            self._background(self._refill_one())

    def _refill_later(self) -> None:
        if self._refill_timer is None and not self._closed:
            self._refill_timer = asyncio.get_running_loop().call_later(
                self.refill_delay, self._refill_now
            )

    def _refill_now(self) -> None:
        if self._refill_timer is not None:
            self._refill_timer.cancel()
            self._refill_timer = None
        self.refill_soon()

    async def _refill_one(self) -> None:
        try:
            await self._add_member()
        except Exception as exc:  # a background fill: log, back off, never raise
            self._fill_failures += 1
            delay = min(_BACKOFF_MAX, _BACKOFF_INITIAL * 2 ** (self._fill_failures - 1))
            log.warning(
                "upstream %s: a warm sandbox did not start (%s); retrying in %.1f s",
                self.name,
                exc.detail if isinstance(exc, UpstreamError) else repr(exc),
                delay,
            )
            if self._retry is None and not self._closed:
                self._retry = asyncio.get_running_loop().call_later(delay, self._retry_fill)

    def _retry_fill(self) -> None:
        self._retry = None
        self.refill_soon()

    async def _start(self) -> StdioSession:
        """A session in a fresh sandbox, past the handshake (the caller holds a count
        in ``_filling`` or a slot while it starts)."""
        session = self._make()
        try:
            await session.prime([dict(m) for m in WARM_HANDSHAKE])
        except BaseException:
            await self._kill(session)
            raise
        return session

    async def _add_member(self) -> None:
        self._filling += 1
        try:
            session = await self._start()
        finally:
            self._filling -= 1
        if self._closed:
            await self._kill(session)
            return
        self._fill_failures = 0
        self._members.append(session)
        self._watchers[session] = asyncio.get_running_loop().create_task(self._watch(session))
        self._signal()

    async def _watch(self, session: StdioSession) -> None:
        """Replace a member that dies while it waits."""
        proc = session.process
        if proc is None:
            return
        await exited(proc)
        self._watchers.pop(session, None)
        if session in self._members:
            self._members.remove(session)
            log.warning("upstream %s: a warm sandbox died while waiting; replacing it", self.name)
            await self._kill(session)
            self._signal()
            self.refill_soon()

    # -- calls ---------------------------------------------------------------------

    async def call(self, owner: str, message: JsonObject) -> tuple[Reply, Lease]:
        """Send one ``tools/call`` to a sandbox of its own; the reply ends its life.

        Raises:
            UpstreamBusy: ``max_concurrent`` calls ran for all of ``wait_seconds``.
            UpstreamError: no sandbox could be started, or it failed the call.
        """
        if self._closed:
            raise UpstreamError(f"upstream {self.name} is closed")
        await self._take_slot()
        try:
            session = await self._acquire()
        except BaseException:
            self._slots.release()
            raise
        lease = Lease(self, session, owner, message.get("id"))
        self.leases.add(lease)
        try:
            reply = await session.request(message, {})
        except BaseException:
            lease.end()
            raise
        lease.arm(self._timeout + STOP_GRACE)
        events = _LeasedEvents(reply.events, lease)
        leased = Reply(
            events, status=reply.status, streaming=reply.streaming, headers=reply.headers
        )
        return leased, lease

    async def _take_slot(self) -> None:
        wait = self.settings.wait_seconds
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            if wait <= 0:
                raise TimeoutError
            await asyncio.wait_for(self._slots.acquire(), wait)
        except TimeoutError:
            log.warning(
                "upstream %s: %d per-call sandboxes busy", self.name, self.settings.max_concurrent
            )
            raise UpstreamBusy(
                f"upstream {self.name}: {self.settings.max_concurrent} per-call sandboxes busy"
            ) from None

    async def _acquire(self) -> StdioSession:
        """A waiting member if one is alive, else one started for this call."""
        while self._members:
            session = self._members.popleft()
            watcher = self._watchers.pop(session, None)
            if watcher is not None:
                watcher.cancel()
            self._signal()
            # The replacement starts once this call is answered (the lease's end), or
            # after a moment at the latest: a sandbox starting beside the call would
            # take the CPU (and, joining its cgroup, stall every fork on the host) the
            # call's own answer needs.
            self._refill_later()
            if session.running:
                return session
            self._background(self._kill(session))
        self.refill_soon()  # the lazy start: the first call fills the pool
        # In a task of its own: a caller that goes away mid-spawn must not cut the
        # spawn off (its process would run on, held by no one); it is killed instead.
        start = asyncio.get_running_loop().create_task(self._start())
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            start.add_done_callback(self._kill_unclaimed)
            raise

    def _kill_unclaimed(self, start: asyncio.Task[StdioSession]) -> None:
        if not start.cancelled() and start.exception() is None:
            self._background(self._kill(start.result()))

    # -- ending ----------------------------------------------------------------------

    def _retire_lease(self, lease: Lease) -> None:
        async def retire() -> None:
            try:
                await self._kill(lease.session)
            finally:
                self.leases.discard(lease)
                self._slots.release()
                self._refill_now()

        self._background(retire())

    async def _kill(self, session: StdioSession) -> None:
        """Kill a sandbox's whole process tree now (no grace: it is never reused)."""
        proc = session.process
        if proc is not None:
            signal_group(proc.pid, signal.SIGKILL)
        await session.close()

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Kill every member and every sandbox still in a call; wait until they are gone."""
        self._closed = True
        for timer in (self._retry, self._refill_timer):
            if timer is not None:
                timer.cancel()
        self._retry = self._refill_timer = None
        members, self._members = list(self._members), deque()
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            watcher.cancel()
        for lease in list(self.leases):
            lease.end()
        await asyncio.gather(*watchers, *(self._kill(s) for s in members), return_exceptions=True)
        while self._tasks:  # fills under way (they kill what they start) and retirements
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._signal()
