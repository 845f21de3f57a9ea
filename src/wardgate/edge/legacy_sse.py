"""Legacy HTTP+SSE (2024-11-05) for old clients: ``GET /sse/{route}`` opens the stream,
``POST /messages/{route}?session_id=…`` carries client messages, answers come on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs

import orjson

from wardgate.core.call import LISTEN_MESSAGE, Call
from wardgate.core.context import CallContext
from wardgate.edge.answers import error_answer
from wardgate.edge.asgi import Receive, Scope, Send, read_body, send_empty, send_json, sse_start
from wardgate.errors import ProtocolError, SessionNotFound, WardgateError
from wardgate.identity.principal import BindingKey
from wardgate.routing.route import Route
from wardgate.routing.sessions import ChannelLease, GatewaySession
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import (
    DEFAULT_MAX_JSON_DEPTH,
    Message,
    parse_message,
    wardgate_error_response,
)
from wardgate.wire.mcp import H_PROTOCOL_VERSION
from wardgate.wire.sse import encode_event

__all__ = ["LegacySseEndpoint"]

log = logging.getLogger("wardgate.edge.sse")

#: What may wait for a legacy SSE client before it counts as gone (it stopped reading).
_QUEUE_BYTES = 8 * 1024 * 1024
#: How long one write to the client may block before the client counts as gone.
_SEND_TIMEOUT = 30.0


@dataclasses.dataclass(slots=True)
class _Channel:
    """One legacy SSE stream: a place in the session store's channel table, kept by use."""

    id: str
    owner: BindingKey
    #: The call the stream itself is: its messages pass the reply phase of this call.
    listen: Call
    #: Its place among the streams (capped in total and per principal); every message
    #: posted restarts its idle timer, and the sweeper ends it when idle.
    lease: ChannelLease
    queue: asyncio.Queue[bytes | None] = dataclasses.field(default_factory=asyncio.Queue)
    #: Bytes waiting in ``queue``: a client that stops reading is cut off at a bound.
    queued: int = 0
    cut: bool = False
    session: GatewaySession | None = None
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)


class LegacySseEndpoint:
    def __init__(
        self, route: Route, max_body_bytes: int, max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    ) -> None:
        self.route = route
        self.max_body = max_body_bytes
        self.max_json_depth = max_json_depth
        self._channels: dict[str, _Channel] = {}

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        ctx: CallContext,
        kind: str,
    ) -> None:
        try:
            if kind == "sse" and scope["method"] == "GET":
                await self._stream(receive, send, ctx)
            elif kind == "messages" and scope["method"] == "POST":
                await self._message(scope, receive, send, headers, ctx)
            else:
                await send_empty(send, 405, [(b"allow", b"GET" if kind == "sse" else b"POST")])
        except WardgateError as exc:
            status, body, extra = error_answer(exc, None, ctx.decision_id)
            await send_json(send, status, body, extra)

    async def _stream(self, receive: Receive, send: Send, ctx: CallContext) -> None:
        # Opening the stream is a call: the request guards may refuse it.
        listen = self.route.open(ctx, LISTEN_MESSAGE)
        status = 200
        lease: ChannelLease | None = None
        try:
            await self.route.admit(listen, None, {})
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            # The place is taken before the stream starts, so a refusal is a plain 503;
            # when the sweeper finds the stream idle, it ends it as the gateway would.
            lease = await self.route.sessions.open_channel(
                ctx.principal.binding_key, lambda: queue.put_nowait(None)
            )
            channel = _Channel(
                secrets.token_urlsafe(32), ctx.principal.binding_key, listen, lease, queue
            )
            self._channels[channel.id] = channel
            endpoint = f"/messages/{self.route.name}?session_id={channel.id}".encode()
            await sse_start(send)
            await send(
                {
                    "type": "http.response.body",
                    "body": encode_event(endpoint, event="endpoint"),
                    "more_body": True,
                }
            )

            async def pump_out() -> None:
                while (chunk := await channel.queue.get()) is not None:
                    channel.queued -= len(chunk)
                    async with asyncio.timeout(_SEND_TIMEOUT):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})

            async def disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            writer = asyncio.create_task(pump_out())
            reader = asyncio.create_task(disconnected())
            try:
                await asyncio.wait((writer, reader), return_when=asyncio.FIRST_COMPLETED)
                if reader.done() or writer.exception() is not None:
                    listen.cancelled(client_gone=True)  # gone, or stopped reading
                else:
                    await send({"type": "http.response.body", "body": b""})
            finally:
                writer.cancel()
                reader.cancel()
                self._channels.pop(channel.id, None)
                for task in channel.tasks:
                    task.cancel()
                if channel.session is not None:
                    await self.route.end_session(channel.session, "client-gone")
        except WardgateError as exc:
            listen.failed(exc)
            status = error_answer(exc, None, ctx.decision_id)[0]
            raise
        finally:
            if lease is not None:
                lease.release()
            await listen.end(status)

    async def _message(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Mapping[str, str],
        ctx: CallContext,
    ) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        channel = self._channels.get((query.get("session_id") or [""])[0])
        if channel is None or channel.owner != ctx.principal.binding_key:
            raise SessionNotFound("unknown legacy SSE session")
        # Every message keeps the stream, and the session behind it, alive.
        channel.lease.touch()
        if channel.session is not None:
            self.route.sessions.touch(channel.session)
        body = await read_body(receive, self.max_body, headers.get("content-length"))
        message = parse_message(body, self.max_json_depth)
        task = asyncio.create_task(self._handle(channel, message, ctx))
        channel.tasks.add(task)
        task.add_done_callback(channel.tasks.discard)
        await send_empty(send, 202)

    def _emit(self, channel: _Channel, message: object) -> None:
        if channel.cut:
            return
        chunk = encode_event(orjson.dumps(message))
        if channel.queued + len(chunk) > _QUEUE_BYTES:
            # The client stopped reading: end its stream rather than drop one message
            # (a dropped response would leave its call hanging) or grow without bound.
            log.warning(
                "legacy SSE client stopped reading; closing its stream",
                extra={"channel": channel.id[:8]},
            )
            channel.cut = True
            while not channel.queue.empty():
                channel.queue.get_nowait()
            channel.queued = 0
            channel.queue.put_nowait(None)
            return
        channel.queued += len(chunk)
        channel.queue.put_nowait(chunk)

    async def _pump(self, channel: _Channel, reply: Reply) -> None:
        try:
            async for event in reply.events:
                if event.message is not None:
                    self._emit(channel, event.message)
        finally:
            await reply.aclose()

    async def _handle(self, channel: _Channel, message: Message, ctx: CallContext) -> None:
        call: Call | None = None
        try:
            if channel.session is not None:
                ctx = dataclasses.replace(ctx, session_id=channel.session.id)
            elif not (message.kind == "request" and message.method == "initialize"):
                raise ProtocolError("initialize first")
            headers = {} if channel.session is None else self._headers(channel.session)
            call = self.route.open(ctx, message)
            await self.route.admit(call, channel.session, headers)
            if message.kind == "request" and message.method == "initialize":
                if channel.session is not None:
                    raise ProtocolError("session already initialized")
                session, reply = await self.route.initialize(call, {})
                channel.session = session
                await self._pump(channel, reply)
                if session is not None:
                    listener = await self.route.listen(
                        channel.listen, session, self._headers(session)
                    )
                    if listener is not None:
                        task = asyncio.create_task(self._pump(channel, listener))
                        channel.tasks.add(task)
                return
            if message.kind == "request":
                await self._pump(channel, await self.route.request(call, channel.session, headers))
            else:
                await self.route.post(call, channel.session, headers)
        except WardgateError as exc:
            if call is not None:
                call.failed(exc)
            log.info(
                "legacy SSE message refused: %s", exc.detail, extra={"decision_id": ctx.decision_id}
            )
            if message.kind == "request":
                self._emit(channel, error_answer(exc, message, ctx.decision_id)[1])
        except asyncio.CancelledError:
            if call is not None:
                call.cancelled(client_gone=True)
            raise
        except Exception:
            log.exception("legacy SSE handler failed", extra={"decision_id": ctx.decision_id})
            if message.kind == "request":
                with contextlib.suppress(Exception):
                    self._emit(
                        channel,
                        wardgate_error_response(message.id, WardgateError(), ctx.decision_id),
                    )
        finally:
            if call is not None:
                await call.end()

    @staticmethod
    def _headers(session: GatewaySession) -> dict[str, str]:
        return {H_PROTOCOL_VERSION: session.protocol_version}
