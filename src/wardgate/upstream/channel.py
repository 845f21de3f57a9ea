"""A session over one bidirectional message channel (a stdio pipe, a legacy SSE stream).

One channel may carry several callers (a stateless-era process shared by a tenant, or
by everyone), so all the protocol names by id is scoped to the caller: each request
gets a fresh upstream id, and its answer goes back by that id only; a caller's
``notifications/cancelled`` is looked up in that caller's own table; progress tokens
become the upstream id going up and the caller's token again coming down; a caller may
answer only a server request it was given. A server message that belongs to no request
goes, on a channel of one principal, to the only request in flight or else the
standalone stream (dedicated sessions); on a channel shared across principals, to no
one (server requests are refused upstream, so they never wait).

``notifications/cancelled`` goes upstream only for a call still in flight whose caller
went away or timed out. After a timeout the channel is probed with ``ping``; a server
that does not answer is stopped (``_abort``) and every call in flight fails with
:class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from wardgate.errors import ProtocolError, UpstreamError
from wardgate.upstream._health import HealthProbe
from wardgate.upstream._pending import (
    SUBSCRIPTION,
    CallerTables,
    CallerView,
    Pending,
    ReplyStream,
    downward,
    refusal,
    upward,
)
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject, Message, RequestId

__all__ = ["CallerView", "ChannelSession"]

log = logging.getLogger("wardgate.upstream")

_UNRELATED_BACKLOG = 256
_SERVER_REQUESTS = 1024  # server-to-client requests awaiting a caller's answer
_OWNER = ""  # the one caller of a dedicated session


class ChannelSession:
    """Shared bookkeeping; subclasses supply ``_connect``, ``_send``, ``_running`` and
    ``_abort``.

    ``dedicated``: the channel serves one client session (handshake era): it has a
    standalone stream and refuses a request id already in flight. ``exclusive``: all
    callers are one principal.
    """

    def __init__(
        self,
        name: str,
        request_timeout: float,
        *,
        dedicated: bool = True,
        exclusive: bool = True,
        health_timeout: float = 10.0,
    ) -> None:
        self._name = name
        self._timeout = request_timeout
        self.dedicated = dedicated
        self.exclusive = exclusive or dedicated
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._starting = 0
        self._tables = CallerTables()
        #: server request id -> the caller it was given to, and the call it came in
        self._server_requests: OrderedDict[RequestId, tuple[str, int | None]] = OrderedDict()
        self._unrelated: deque[Event] = deque(maxlen=_UNRELATED_BACKLOG)
        self._unrelated_ready = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._handshake: list[JsonObject] = []
        self._closed = False
        self._started_once = False
        self._health = HealthProbe(self, health_timeout)
        self._background: set[asyncio.Task[None]] = set()
        self.restarts = 0
        #: Server messages that could be given to no caller (shared channels).
        self.dropped = 0

    # -- what a transport provides ------------------------------------------------

    def _running(self) -> bool:
        raise NotImplementedError

    async def _connect(self) -> None:
        """Open the channel and start a reader that calls ``_dispatch``/``_fail_pending``."""
        raise NotImplementedError

    async def _send(self, data: bytes) -> None:
        raise NotImplementedError

    async def _settle(self) -> None:
        """Before a restart: let the old channel's reader finish failing its calls."""

    async def _abort(self, reason: str) -> None:
        """Tear down an unhealthy channel at once; its reader then fails the calls."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed

    @property
    def idle(self) -> bool:
        """No call in flight or starting."""
        return not self._pending and not self._starting

    def caller(self, caller: str) -> CallerView:
        """This channel as one caller sees it (stateless era on a shared channel)."""
        return CallerView(self, caller)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- starting and writing ---------------------------------------------------------

    async def _ensure_running(self) -> None:
        if self._closed:
            raise UpstreamError(f"session with {self._name} is closed")
        if self._running():
            return
        async with self._start_lock:
            if self._running():
                return
            if self._closed:
                raise UpstreamError(f"session with {self._name} is closed")
            if self._started_once:
                self.restarts += 1
                log.warning("upstream %s went away; reconnecting", self._name)
            self._started_once = True
            await self._settle()
            await self._connect()
            if self._handshake:
                await self._replay_handshake()

    async def _internal(self, message: JsonObject, wait: float) -> Event | None:
        """Send a request of the gateway's own; its answer, or ``None`` on timeout."""
        uid = next(self._ids)
        pending = Pending(None, None, None, message.get("method"))
        self._pending[uid] = pending
        try:
            await self._write({**message, "id": uid})
            return await asyncio.wait_for(pending.queue.get(), wait)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(uid, None)

    async def prime(self, handshake: list[JsonObject]) -> None:
        """Start the channel and take it through ``handshake`` (an ``initialize``
        request, then notifications) the way a restart replays a client's: a warm
        sandbox is ready for a call with no handshake of its own.

        Raises:
            UpstreamError: the server did not start or did not answer ``initialize``.
        """
        self._handshake = list(handshake)
        await self._ensure_running()

    def gave(self, server_request_id: object) -> bool:
        """Was a server-to-client request of this id handed to a caller, unanswered?"""
        try:
            return server_request_id in self._server_requests
        except TypeError:  # an unhashable id names nothing
            return False

    async def _replay_handshake(self) -> None:
        """Bring a restarted channel back to the state the client negotiated."""
        init, *rest = self._handshake
        event = await self._internal(init, self._timeout)
        if event is None or event.message is None or "error" in event.message:
            raise UpstreamError(f"upstream {self._name} did not re-initialize")
        for message in rest:
            await self._write(message)

    async def _write(self, message: JsonObject) -> None:
        async with self._write_lock:
            await self._send(orjson.dumps(message))

    # -- server to client -------------------------------------------------------------

    def _dispatch(self, message: Message) -> None:
        raw = message.raw
        if message.kind == "response":
            uid = raw.get("id")
            pending = self._pending.get(uid) if isinstance(uid, int) else None
            if pending is None:
                log.info("upstream %s answered an unknown request id", self._name)
                return
            pending.answered = True
            pending.queue.put_nowait(Event({**raw, "id": pending.client_id}))
            pending.queue.put_nowait(None)
            return
        target, out = self._route(message)
        if target is not None:
            if message.kind == "request":
                self._remember(raw["id"], target.caller or _OWNER, target.uid)
            target.queue.put_nowait(Event(out))
        elif self.dedicated:
            if message.kind == "request":
                self._remember(raw["id"], _OWNER, None)
            self._unrelated.append(Event(raw))
            self._unrelated_ready.set()
        else:
            # No caller can be named: telling one would leak what may be another's.
            self.dropped += 1
            log.debug("upstream %s: %s belongs to no caller", self._name, message.method)
            if message.kind == "request":
                self._spawn(self._refuse_server_request(raw))

    def _related(self, message: Message) -> Pending | None:
        """Which caller's request a server message belongs to, when the channel can tell."""
        params = message.params
        if message.method == "notifications/progress":
            return self._by_uid(params.get("progressToken"), need_token=True)
        meta = params.get("_meta")
        if isinstance(meta, dict) and SUBSCRIPTION in meta:
            return self._by_uid(meta[SUBSCRIPTION])
        if message.method == "notifications/cancelled":
            return self._by_uid(params.get("requestId"))
        if not self.exclusive:
            return None
        live = [p for p in self._pending.values() if p.client_id is not None]
        return live[0] if len(live) == 1 else None

    def _by_uid(self, uid: Any, *, need_token: bool = False) -> Pending | None:
        pending = self._pending.get(uid) if isinstance(uid, int) else None
        if pending is None or pending.client_id is None:
            return None
        if need_token and pending.client_token is None:
            return None
        return pending

    def _route(self, message: Message) -> tuple[Pending | None, JsonObject]:
        """The call a server message belongs to, and the message as its caller sees it."""
        withdrawn = message.params.get("requestId")
        if message.method == "notifications/cancelled" and isinstance(withdrawn, (str, int)):
            given = self._server_requests.pop(withdrawn, None)
            if given is not None:
                # The server withdraws a request it gave a caller: its own id, as is.
                return self._by_uid(given[1]), message.raw
        target = self._related(message)
        return target, downward(message.raw, target) if target is not None else message.raw

    def _remember(self, server_id: RequestId, caller: str, uid: int | None) -> None:
        self._server_requests[server_id] = (caller, uid)
        while len(self._server_requests) > _SERVER_REQUESTS:
            self._server_requests.popitem(last=False)

    async def _refuse_server_request(self, raw: JsonObject) -> None:
        # If the channel is going away, nothing waits for the answer any more.
        with contextlib.suppress(UpstreamError):
            await self._write(refusal(raw))

    def _fail_pending(self, error: UpstreamError | None = None) -> None:
        failure = error or UpstreamError(f"upstream {self._name} went away mid-call")
        for uid, pending in list(self._pending.items()):
            pending.failure = failure
            pending.queue.put_nowait(None)
            self._pending.pop(uid, None)
        self._server_requests.clear()

    # -- client to server -------------------------------------------------------------

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        return await self._request(_OWNER, message)

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        return await self._post(_OWNER, message)

    async def _request(self, caller: str, message: JsonObject) -> Reply:
        client_id: RequestId = message["id"]
        if self.dedicated and self._tables.find(caller, client_id):
            # One client's ids must be unique among its requests in flight; answering
            # the second would make its cancellation ambiguous.
            error = ProtocolError(f"request id {client_id!r} is already in flight")
            return Reply(ReplyStream.failed(error), streaming=True)
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        self._starting += 1  # a channel starting for a call is not idle
        try:
            await self._ensure_running()
        finally:
            self._starting -= 1
        # Registered once the process runs: a restart fails only the calls it cut off.
        uid = next(self._ids)
        pending = Pending(caller, client_id, token, message.get("method"), uid)
        self._pending[uid] = pending
        self._tables.add(caller, client_id, uid)
        if self.dedicated and message.get("method") == "initialize":
            self._handshake = [message]
        try:
            await self._write(upward(message, uid, token))
        except BaseException:
            self._end(uid, pending)
            raise
        loop = asyncio.get_running_loop()
        return Reply(ReplyStream(self, uid, pending, loop.time() + self._timeout), streaming=True)

    def _end(self, uid: int, pending: Pending) -> None:
        """A call is over for its caller: forget it; tell the server if it still works."""
        if pending.ended:
            return
        pending.ended = True
        in_flight = self._pending.pop(uid, None) is not None
        self._tables.remove(pending.caller or _OWNER, pending.client_id, uid)
        if (
            in_flight
            and not pending.answered
            and not pending.cancelled
            and pending.failure is None
            and pending.method != "initialize"  # the spec forbids cancelling it
            and self._running()
        ):
            reason = "request timed out" if pending.timed_out else "client went away"
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": uid, "reason": reason},
            }
            self._spawn(self._write_quietly(cancel))
        if pending.timed_out:
            self._health.check()

    async def _write_quietly(self, message: JsonObject) -> None:
        # If the channel died meanwhile, nothing is left to cancel.
        with contextlib.suppress(UpstreamError):
            await self._write(message)

    async def _post(self, caller: str, message: JsonObject) -> int:
        method = message.get("method")
        if method is None:
            # A caller answers a server-to-client request: only one it was given.
            if self._server_requests.get(message.get("id"), (None,))[0] != caller:  # type: ignore[arg-type]
                log.info("upstream %s: an answer to a request not given to the caller", self._name)
                return 202
            del self._server_requests[message.get("id")]  # type: ignore[arg-type]
        elif method == "notifications/cancelled":
            await self._cancel(caller, message)
            return 202
        elif method == "notifications/initialized" and self.dedicated and len(self._handshake) == 1:
            self._handshake.append(message)
        await self._ensure_running()
        await self._write(message)
        return 202

    async def _cancel(self, caller: str, message: JsonObject) -> None:
        params = message.get("params")
        if not isinstance(params, dict):
            return
        uids = self._tables.find(caller, params.get("requestId"))
        if not uids or len(uids) != 1:
            # Nothing of this caller's in flight by that id (or two of its own, which
            # cannot be told apart): ignore, as the spec allows.
            return
        uid = uids[0]
        pending = self._pending.get(uid)
        if pending is None or pending.method == "initialize":
            return
        pending.cancelled = True
        if self._running():
            await self._write_quietly({**message, "params": {**params, "requestId": uid}})
        # The server should not answer a cancelled request: release it now, which ends
        # the client's stream instead of holding it to the timeout.
        pending.queue.put_nowait(None)

    # -- the standalone stream -------------------------------------------------------

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        if not self.dedicated:
            return None
        await self._ensure_running()
        return Reply(self._unrelated_events(), streaming=True)

    async def _unrelated_events(self) -> AsyncIterator[Event]:
        while not self._closed:
            while self._unrelated:
                yield self._unrelated.popleft()
            self._unrelated_ready.clear()
            await self._unrelated_ready.wait()

    def _mark_closed(self) -> None:
        self._closed = True
        self._unrelated_ready.set()
        self._health.cancel()
        self._fail_pending(UpstreamError(f"session with {self._name} closed"))
