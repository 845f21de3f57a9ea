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

from wardgate.core.pipeline import CallContext
from wardgate.edge.asgi import Receive, Scope, Send, read_body, send_empty, send_json, sse_start
from wardgate.errors import ProtocolError, SessionNotFound, WardgateError
from wardgate.identity.principal import BindingKey
from wardgate.routing.route import Route
from wardgate.routing.sessions import ChannelLease, GatewaySession, TooManySessions
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import Message, parse_message, wardgate_error_response
from wardgate.wire.mcp import H_PROTOCOL_VERSION
from wardgate.wire.sse import encode_event

__all__ = ["LegacySseEndpoint"]

log = logging.getLogger("wardgate.edge.sse")

_QUEUE = 1024


@dataclasses.dataclass(slots=True)
class _Channel:
    """One legacy SSE stream: a place in the session store's channel table, kept by use."""

    id: str
    owner: BindingKey
    lease: ChannelLease
    #: Set when the stream must end: the sweeper found it idle, or the gateway stops.
    ended: asyncio.Event
    queue: asyncio.Queue[bytes | None] = dataclasses.field(
        default_factory=lambda: asyncio.Queue(maxsize=_QUEUE)
    )
    session: GatewaySession | None = None
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)


class LegacySseEndpoint:
    def __init__(self, route: Route, max_body_bytes: int) -> None:
        self.route = route
        self.max_body = max_body_bytes
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
            extra = exc.headers() if isinstance(exc, TooManySessions) else []
            await send_json(
                send, exc.http_status, wardgate_error_response(None, exc, ctx.decision_id), extra
            )

    async def _stream(self, receive: Receive, send: Send, ctx: CallContext) -> None:
        ended = asyncio.Event()
        # The place is taken before the stream starts, so a refusal is a plain 503.
        lease = await self.route.sessions.open_channel(ctx.principal.binding_key, ended.set)
        channel = _Channel(secrets.token_urlsafe(32), ctx.principal.binding_key, lease, ended)
        self._channels[channel.id] = channel
        try:
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
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

            async def client_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            waiters = {
                asyncio.create_task(pump_out()),
                asyncio.create_task(client_gone()),
                asyncio.create_task(ended.wait()),
            }
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if ended.is_set():
                # Idle (or shutting down): finish the response so the client sees the end.
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            lease.release()
            self._channels.pop(channel.id, None)
            for task in channel.tasks:
                task.cancel()
            if channel.session is not None:
                await self.route.end_session(channel.session)

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
        message = parse_message(body)
        task = asyncio.create_task(self._handle(channel, message, ctx))
        channel.tasks.add(task)
        task.add_done_callback(channel.tasks.discard)
        await send_empty(send, 202)

    def _emit(self, channel: _Channel, message: object) -> None:
        try:
            channel.queue.put_nowait(encode_event(orjson.dumps(message)))
        except asyncio.QueueFull:
            log.warning(
                "legacy SSE client too slow; dropping a message", extra={"channel": channel.id[:8]}
            )

    async def _pump(self, channel: _Channel, reply: Reply) -> None:
        try:
            async for event in reply.events:
                if event.message is not None:
                    self._emit(channel, event.message)
        finally:
            await reply.aclose()

    async def _handle(self, channel: _Channel, message: Message, ctx: CallContext) -> None:
        try:
            if message.kind == "request" and message.method == "initialize":
                if channel.session is not None:
                    raise ProtocolError("session already initialized")
                session, reply = await self.route.initialize(ctx, message, {})
                channel.session = session
                await self._pump(channel, reply)
                if session is not None:
                    listener = await self.route.listen(ctx, session, self._headers(session))
                    if listener is not None:
                        task = asyncio.create_task(self._pump(channel, listener))
                        channel.tasks.add(task)
                return
            if channel.session is None:
                raise ProtocolError("initialize first")
            ctx = dataclasses.replace(ctx, session_id=channel.session.id)
            if message.kind == "request":
                reply = await self.route.request(
                    ctx, message, channel.session, self._headers(channel.session)
                )
                await self._pump(channel, reply)
            else:
                await self.route.post(ctx, message, channel.session, self._headers(channel.session))
        except WardgateError as exc:
            log.info(
                "legacy SSE message refused: %s", exc.detail, extra={"decision_id": ctx.decision_id}
            )
            if message.kind == "request":
                self._emit(channel, wardgate_error_response(message.id, exc, ctx.decision_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("legacy SSE handler failed", extra={"decision_id": ctx.decision_id})
            if message.kind == "request":
                with contextlib.suppress(Exception):
                    self._emit(
                        channel,
                        wardgate_error_response(message.id, WardgateError(), ctx.decision_id),
                    )

    @staticmethod
    def _headers(session: GatewaySession) -> dict[str, str]:
        return {H_PROTOCOL_VERSION: session.protocol_version}
