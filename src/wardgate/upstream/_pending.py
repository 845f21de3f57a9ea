"""The per-call pieces of a :class:`~wardgate.upstream.channel.ChannelSession`: a call in
flight, the stream that hands its messages to the caller, and one caller's view of a
shared channel."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wardgate.errors import UpstreamError, UpstreamTimeout, WardgateError
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject, RequestId

if TYPE_CHECKING:
    from wardgate.upstream.channel import ChannelSession

__all__ = [
    "SUBSCRIPTION",
    "CallerTables",
    "CallerView",
    "Pending",
    "ReplyStream",
    "downward",
    "refusal",
    "upward",
]

SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"


@dataclass(slots=True)
class Pending:
    """One request in flight: whose it is, under which id and progress token."""

    caller: str | None  # None: the gateway's own request (ping, handshake replay)
    client_id: RequestId | None
    client_token: Any
    method: str | None
    uid: int | None = None  # the id the server knows the call by
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    answered: bool = False
    cancelled: bool = False
    timed_out: bool = False
    ended: bool = False
    failure: UpstreamError | None = None


class CallerTables:
    """Each caller's client request ids in flight, and the upstream ids they became."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[RequestId, list[int]]] = {}

    def find(self, caller: str, client_id: Any) -> list[int]:
        try:
            return self._tables.get(caller, {}).get(client_id, [])
        except TypeError:  # an unhashable id names nothing in flight
            return []

    def add(self, caller: str, client_id: RequestId, uid: int) -> None:
        self._tables.setdefault(caller, {}).setdefault(client_id, []).append(uid)

    def remove(self, caller: str, client_id: RequestId | None, uid: int) -> None:
        table = self._tables.get(caller)
        uids = table.get(client_id) if table is not None and client_id is not None else None
        if table is None or uids is None or uid not in uids:
            return
        uids.remove(uid)
        if not uids:
            del table[client_id]  # type: ignore[arg-type]
        if not table:
            del self._tables[caller]

    def __contains__(self, caller: str) -> bool:
        return caller in self._tables


class ReplyStream:
    """The messages of one call, ending with its response; closing it ends the call.

    A class rather than an async generator so that closing it before the first message
    still ends the call (a generator never started runs no ``finally``).

    Raises (from iteration):
        UpstreamTimeout: no response within the request timeout.
        UpstreamError: the channel went away mid-call.
    """

    def __init__(
        self,
        channel: ChannelSession | None,
        uid: int,
        pending: Pending,
        deadline: float,
        failure: WardgateError | None = None,
    ) -> None:
        self._channel = channel
        self._uid = uid
        self._pending = pending
        self._deadline = deadline
        self._failure = failure
        self._done = False

    @classmethod
    def failed(cls, error: WardgateError) -> ReplyStream:
        """A stream that fails at once, so the route answers the call in-band."""
        return cls(None, 0, Pending(None, None, None, None), 0.0, error)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> Event:
        if self._done:
            raise StopAsyncIteration
        if self._failure is not None:
            self._done = True
            raise self._failure
        pending = self._pending
        try:
            if pending.queue.empty():
                # A total deadline: messages (progress, keep-alives) never extend a call.
                # (asyncio.timeout_at, not wait_for: no task per message.)
                async with asyncio.timeout_at(self._deadline):
                    item = await pending.queue.get()
            else:
                item = pending.queue.get_nowait()
        except TimeoutError:
            pending.timed_out = True
            self._finish()
            raise UpstreamTimeout("upstream did not answer in time") from None
        if item is None:
            self._finish()
            if pending.failure is not None:
                raise pending.failure
            raise StopAsyncIteration
        return item

    def _finish(self) -> None:
        self._done = True
        if self._channel is not None:
            self._channel._end(self._uid, self._pending)

    async def aclose(self) -> None:
        self._finish()


class CallerView:
    """One caller's handle on a shared channel: its requests, cancellations and answers
    are looked up in its own tables. Closing a view leaves the channel running."""

    def __init__(self, channel: ChannelSession, caller: str) -> None:
        self.channel = channel
        self.caller = caller

    @property
    def alive(self) -> bool:
        return self.channel.alive

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        return await self.channel._request(self.caller, message)

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        return await self.channel._post(self.caller, message)

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        return None  # a shared channel has no standalone stream to hand out

    async def close(self) -> None:
        return None


def upward(message: JsonObject, uid: int, token: Any) -> JsonObject:
    """The message as the server sees it: the channel's id and progress token."""
    if token is None:
        return {**message, "id": uid}
    params = message["params"]
    params = {**params, "_meta": {**params["_meta"], "progressToken": uid}}
    return {**message, "id": uid, "params": params}


def downward(raw: JsonObject, pending: Pending) -> JsonObject:
    """Put the caller's own names back: progress token, subscription id, request id."""
    params = raw.get("params")
    if not isinstance(params, dict):
        return raw
    params = dict(params)
    if raw.get("method") == "notifications/progress":
        params["progressToken"] = pending.client_token
    elif raw.get("method") == "notifications/cancelled":
        params["requestId"] = pending.client_id
    meta = params.get("_meta")
    if isinstance(meta, dict) and SUBSCRIPTION in meta:
        params["_meta"] = {**meta, SUBSCRIPTION: pending.client_id}
    return {**raw, "params": params}


def refusal(raw: JsonObject) -> JsonObject:
    """The answer to a server request no caller may be given: ``ping`` is answered,
    anything else refused."""
    if raw.get("method") == "ping":
        return {"jsonrpc": "2.0", "id": raw["id"], "result": {}}
    error = {"code": -32603, "message": "No client can answer this request"}
    return {"jsonrpc": "2.0", "id": raw["id"], "error": error}
