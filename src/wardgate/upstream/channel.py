"""A session over one bidirectional message channel (a stdio pipe, a legacy SSE stream).

Request ids are remapped so that clients sharing the channel never collide; server
messages are routed to the request they belong to as far as the channel can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wardgate.errors import UpstreamError
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject, Message, RequestId, error_response

__all__ = ["ChannelSession"]

log = logging.getLogger("wardgate.upstream")

_UNRELATED_BACKLOG = 256


@dataclass(slots=True)
class _Pending:
    client_id: RequestId | None
    progress_token: Any
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class ChannelSession:
    """Shared bookkeeping; subclasses supply ``_connect``, ``_send`` and ``_running``."""

    def __init__(self, name: str, request_timeout: float) -> None:
        self._name = name
        self._timeout = request_timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._by_client_id: dict[RequestId, int] = {}
        self._unrelated: deque[Event] = deque(maxlen=_UNRELATED_BACKLOG)
        self._unrelated_ready = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._handshake: list[JsonObject] = []
        self._closed = False
        self._started_once = False
        self.restarts = 0

    # -- what a transport provides ------------------------------------------------

    def _running(self) -> bool:
        raise NotImplementedError

    async def _connect(self) -> None:
        """Open the channel and start a reader that calls ``_dispatch``/``_fail_pending``."""
        raise NotImplementedError

    async def _send(self, data: bytes) -> None:
        raise NotImplementedError

    # -- shared logic ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed

    async def _ensure_running(self) -> None:
        if self._closed:
            raise UpstreamError(f"session with {self._name} is closed")
        if self._running():
            return
        async with self._start_lock:
            if self._running():
                return
            if self._started_once:
                self.restarts += 1
                log.warning("upstream %s went away; reconnecting", self._name)
            self._started_once = True
            await self._connect()
            if self._handshake:
                await self._replay_handshake()

    async def _replay_handshake(self) -> None:
        """Bring a restarted channel back to the state the client negotiated."""
        init, *rest = self._handshake
        uid = next(self._ids)
        pending = _Pending(None, None)
        self._pending[uid] = pending
        await self._write({**init, "id": uid})
        try:
            event = await asyncio.wait_for(pending.queue.get(), self._timeout)
        except TimeoutError:
            raise UpstreamError(f"upstream {self._name} did not re-initialize") from None
        finally:
            self._pending.pop(uid, None)
        if event is None or event.message is None or "error" in event.message:
            raise UpstreamError(f"upstream {self._name} refused to re-initialize")
        for message in rest:
            await self._write(message)

    async def _write(self, message: JsonObject) -> None:
        import orjson

        async with self._write_lock:
            await self._send(orjson.dumps(message))

    def _dispatch(self, message: Message) -> None:
        raw = message.raw
        if message.kind == "response":
            uid = raw.get("id")
            pending = self._pending.get(uid) if isinstance(uid, int) else None
            if pending is None:
                log.info("upstream %s answered an unknown request id", self._name)
                return
            out = dict(raw)
            if pending.client_id is not None:
                out["id"] = pending.client_id
            pending.queue.put_nowait(Event(out))
            pending.queue.put_nowait(None)
            return
        target = self._related(message)
        if target is not None:
            target.queue.put_nowait(Event(raw))
        else:
            self._unrelated.append(Event(raw))
            self._unrelated_ready.set()

    def _related(self, message: Message) -> _Pending | None:
        """Which in-flight request a server message belongs to, as far as stdio can tell."""
        if message.method == "notifications/progress":
            token = message.params.get("progressToken")
            for pending in self._pending.values():
                if pending.progress_token is not None and pending.progress_token == token:
                    return pending
        live = [p for p in self._pending.values() if p.client_id is not None]
        if len(live) == 1:
            return live[0]
        return None

    def _fail_pending(self) -> None:
        for uid, pending in list(self._pending.items()):
            error = error_response(pending.client_id, -32603, "Upstream unavailable")
            pending.queue.put_nowait(Event(error))
            pending.queue.put_nowait(None)
            self._pending.pop(uid, None)

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        await self._ensure_running()
        uid = next(self._ids)
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        client_id: RequestId = message["id"]
        pending = _Pending(client_id, token)
        self._pending[uid] = pending
        self._by_client_id[client_id] = uid
        if message.get("method") == "initialize":
            self._handshake = [message]
        try:
            await self._write({**message, "id": uid})
        except UpstreamError:
            self._pending.pop(uid, None)
            self._by_client_id.pop(client_id, None)
            raise
        return Reply(self._events(uid, pending), streaming=True)

    async def _events(self, uid: int, pending: _Pending) -> AsyncIterator[Event]:
        finished = False
        try:
            while True:
                try:
                    event = await asyncio.wait_for(pending.queue.get(), self._timeout)
                except TimeoutError:
                    yield Event(error_response(pending.client_id, -32001, "Upstream timed out"))
                    return
                if event is None:
                    finished = True
                    return
                yield event
        finally:
            self._pending.pop(uid, None)
            if pending.client_id is not None:
                self._by_client_id.pop(pending.client_id, None)
            if not finished and self._running():
                # The client went away or timed out: tell the server to stop working.
                cancel = {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": uid, "reason": "client went away"},
                }
                with contextlib.suppress(UpstreamError):
                    await self._write(cancel)

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        await self._ensure_running()
        if message.get("method") == "notifications/cancelled":
            params = message.get("params")
            if isinstance(params, dict):
                uid = self._by_client_id.get(params.get("requestId"))  # type: ignore[arg-type]
                if uid is None:
                    return 202  # nothing in flight by that id: ignore, as the spec allows
                message = {**message, "params": {**params, "requestId": uid}}
                await self._write(message)
                # The server should not answer a cancelled request: release it now,
                # which ends the client's stream instead of holding it to the timeout.
                pending = self._pending.get(uid)
                if pending is not None:
                    pending.queue.put_nowait(None)
                return 202
        elif message.get("method") == "notifications/initialized" and len(self._handshake) == 1:
            self._handshake.append(message)
        await self._write(message)
        return 202

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
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
