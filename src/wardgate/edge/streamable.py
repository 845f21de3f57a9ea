"""Streamable HTTP, both eras, on one endpoint: ``POST``, ``GET`` and ``DELETE``.

The era is chosen per request from ``MCP-Protocol-Version`` as the official SDK does.
Handshake-era requests live in a gateway session (``Mcp-Session-Id``); stateless
(2026-07-28) requests have their headers checked against the body and go to the
upstream's pooled session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

import orjson

from wardgate.core.call import LISTEN_MESSAGE, Call
from wardgate.core.context import CallContext
from wardgate.edge.answers import error_answer
from wardgate.edge.asgi import (
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_empty,
    sse_start,
    watch_disconnect,
)
from wardgate.edge.auth import EdgeAuth
from wardgate.edge.jwe import CONTENT_TYPE as JOSE
from wardgate.edge.jwe import GatewayJweKey, decrypt_request, encrypt_response
from wardgate.errors import (
    HeaderMismatch,
    InvalidParams,
    MethodNotFound,
    ProtocolError,
    SessionNotFound,
    UnsupportedVersion,
    UpstreamError,
    WardgateError,
)
from wardgate.routing.route import Route
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.telemetry.events import CallEnded, session_ref
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import (
    DEFAULT_MAX_JSON_DEPTH,
    Message,
    parse_message,
    wardgate_error_response,
)
from wardgate.wire.mcp import (
    H_LAST_EVENT_ID,
    H_METHOD,
    H_NAME,
    H_PARAM_PREFIX,
    H_PROTOCOL_VERSION,
    H_SESSION_ID,
    KNOWN_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    NAMED_METHODS,
    decode_header_value,
    era_of,
)
from wardgate.wire.sse import encode_event

__all__ = ["StreamableHttpEndpoint", "forwarded_headers", "send_reply"]

log = logging.getLogger("wardgate.edge")
access = logging.getLogger("wardgate.access")

_FORWARDED = (H_PROTOCOL_VERSION, H_METHOD, H_NAME, H_LAST_EVENT_ID)


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The MCP headers a relay passes on; everything else (cookies, auth) stays here."""
    out = {k: headers[k] for k in _FORWARDED if k in headers}
    for name, value in headers.items():
        if name.startswith(H_PARAM_PREFIX):
            out[name] = value
    return out


def _accepts(accept: str | None, *types: str) -> bool:
    if accept is None:
        return True
    listed = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "*/*" in listed or all(t in listed for t in types)


def check_modern(message: Message, headers: Mapping[str, str], version: str) -> None:
    """The 2026-07-28 rules: ``_meta`` envelope present, headers equal to the body.

    Raises:
        InvalidParams: the ``_meta`` envelope is missing.
        HeaderMismatch: a standard header is missing or disagrees with the body.
        ProtocolError: the client sent a response, which it must not.
    """
    if message.kind == "response":
        raise ProtocolError("clients must not send responses in this protocol version")
    if message.kind == "request":
        meta = message.params.get("_meta")
        if not isinstance(meta, dict) or META_PROTOCOL_VERSION not in meta:
            raise InvalidParams("_meta protocolVersion is required")
        if META_CLIENT_CAPABILITIES not in meta:
            raise InvalidParams("_meta clientCapabilities is required")
        if meta[META_PROTOCOL_VERSION] != version:
            raise HeaderMismatch("MCP-Protocol-Version header and _meta disagree")
        if headers.get(H_METHOD) != message.method:
            raise HeaderMismatch("Mcp-Method header missing or not equal to the body")
        if message.method in NAMED_METHODS:
            raw_name = headers.get(H_NAME)
            if raw_name is None or decode_header_value(raw_name) != message.target_name:
                raise HeaderMismatch("Mcp-Name header missing or not equal to the body")
    elif H_METHOD in headers and headers[H_METHOD] != message.method:
        raise HeaderMismatch("Mcp-Method header not equal to the body")


Seal = Callable[[bytes], bytes]

#: How long one write to a client may wait (a client that stops reading is cut off).
DEFAULT_SEND_TIMEOUT = 30.0


class ClientTooSlow(Exception):
    """The client stopped reading a stream; the gateway drops it."""


async def _send_message(
    send: Send, status: int, message: object, headers: list[tuple[bytes, bytes]], seal: Seal | None
) -> int:
    if seal is None:
        payload = orjson.dumps(message)
        await send_bytes(send, status, payload, b"application/json", headers)
    else:
        payload = seal(orjson.dumps(message))
        await send_bytes(send, status, payload, JOSE.encode(), headers)
    return len(payload)


async def send_reply(
    send: Send,
    reply: Reply,
    call: Call,
    extra_headers: list[tuple[bytes, bytes]],
    seal: Seal | None = None,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
) -> int:
    """Relay a reply: plain JSON when it is one response, else SSE; returns the status.

    With ``seal`` (JWE), every message body is encrypted to the client. A stream whose
    client stops reading for ``send_timeout`` seconds is cut off.

    Raises:
        ClientTooSlow: the client did not take a stream event in time.
    """
    events = reply.events
    try:
        if reply.status == 202:
            await send_empty(send, 202, extra_headers)
            return 202
        first = await anext(events, None)
        if first is None:
            error = UpstreamError("upstream sent no response")
            call.failed(error)
            body = wardgate_error_response(call.request.id, error, call.ctx.decision_id)
            call.response_bytes += await _send_message(send, 502, body, extra_headers, seal)
            return 502
        if first.is_response and first.event_id is None and first.retry_ms is None:
            status = reply.status if reply.status < 500 else 502
            size = await _send_message(send, status, first.message, extra_headers, seal)
            call.response_bytes += size
            return status
        await sse_start(send, extra_headers)
        await _stream(send, first, events, call, seal, send_timeout)
        return 200
    finally:
        await reply.aclose()


async def _stream(
    send: Send,
    event: Event | None,
    events: AsyncIterator[Event],
    call: Call,
    seal: Seal | None,
    send_timeout: float,
) -> None:
    """Write events as SSE until the reply ends; the response was started already."""
    while event is not None:
        data = None if event.message is None else orjson.dumps(event.message)
        if data is not None and seal is not None:
            data = seal(data)
        chunk = encode_event(data, event_id=event.event_id, retry=event.retry_ms)
        call.response_bytes += len(chunk)
        try:
            async with asyncio.timeout(send_timeout):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except TimeoutError:
            raise ClientTooSlow(f"client took no event for {send_timeout} s") from None
        event = await anext(events, None)
    await send({"type": "http.response.body", "body": b""})


class StreamableHttpEndpoint:
    """One route's ``/mcp`` endpoint."""

    def __init__(
        self,
        route: Route,
        sessions: SessionStore,
        max_body_bytes: int,
        auth: EdgeAuth | None = None,
        jwe: GatewayJweKey | None = None,
        jwe_required: bool = False,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        self.route = route
        self.max_json_depth = max_json_depth
        self.sessions = sessions
        self.max_body = max_body_bytes
        self.auth = auth
        self.jwe = jwe
        self.jwe_required = jwe_required
        self.send_timeout = send_timeout

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], ctx: CallContext
    ) -> None:
        started = time.perf_counter()
        method = scope["method"]
        status: int | None = None
        request: Message | None = None
        seal: Seal | None = None
        calls: list[Call] = []  # the call this request became, once it is one
        try:
            if method == "POST":
                body = await read_body(receive, self.max_body, headers.get("content-length"))
                if not _accepts(headers.get("accept"), "application/json", "text/event-stream"):
                    status = 406
                    raise ProtocolError("Accept must list application/json and text/event-stream")
                ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if ctype == JOSE and self.jwe is not None:
                    decrypted = decrypt_request(body, self.jwe, max_bytes=self.max_body)
                    body, reply_key = decrypted.plaintext, decrypted.reply_key

                    def seal(data: bytes) -> bytes:
                        return encrypt_response(data, reply_key).encode()

                elif ctype != "application/json" or self.jwe_required:
                    status = 415
                    raise ProtocolError(
                        "Content-Type must be application/jose"
                        if self.jwe_required
                        else "Content-Type must be application/json"
                    )
                request = parse_message(body, self.max_json_depth)
                async with watch_disconnect(receive) as watch:
                    status = await self._post(send, headers, ctx, request, seal, calls, len(body))
                if watch.gone and calls:
                    calls[0].cancelled(client_gone=True)
            elif method == "GET":
                async with watch_disconnect(receive) as watch:
                    status = await self._get(send, headers, ctx, calls)
                if watch.gone and calls:
                    calls[0].cancelled(client_gone=True)
            elif method == "DELETE":
                status = await self._delete(send, headers, ctx)
            else:
                status = 405
                await send_empty(send, 405, [(b"allow", b"GET, POST, DELETE")])
        except WardgateError as exc:
            if calls:
                calls[0].failed(exc)
            answer_status, error, extra = error_answer(exc, request, ctx.decision_id)
            status = status if status in (406, 415) else answer_status
            log.info(
                "refused: %s",
                exc.detail,
                extra={"decision_id": ctx.decision_id, "route": self.route.name, "code": exc.code},
            )
            if self.auth is not None:
                extra += self.auth.error_headers(exc, self.route.name, scope, headers)
            await _send_message(send, status, error, extra, seal)
        except ClientTooSlow as exc:
            log.info("cut off: %s", exc, extra={"decision_id": ctx.decision_id})
            if calls:
                calls[0].cancelled(client_gone=True)
        finally:
            if calls:
                await calls[0].end(status)
            else:
                self._ended_without_call(ctx, method, request, status, started)

    def _ended_without_call(
        self,
        ctx: CallContext,
        method: str,
        request: Message | None,
        status: int | None,
        started: float,
    ) -> None:
        """A request refused before it became a call still leaves its access record."""
        self.route.pipeline.events.emit(
            CallEnded(
                ctx.decision_id,
                self.route.name,
                request.method if request is not None else f"HTTP {method}",
                request.target_name if request is not None else None,
                None,
                ctx.principal.subject,
                ctx.principal.tenant,
                ctx.transport,
                ctx.era,
                session_ref(ctx.session_id) if ctx.session_id is not None else None,
                "ok" if status is not None and status < 400 else "error",
                None,
                status,
                round((time.perf_counter() - started) * 1000, 3),
                0,
                0,
                0,
            )
        )

    async def _session(self, headers: Mapping[str, str], ctx: CallContext) -> GatewaySession:
        sid = headers.get(H_SESSION_ID)
        if sid is None:
            raise ProtocolError("Bad Request: Missing session ID")
        session = await self.sessions.find(
            sid,
            self.route.name,
            ctx.principal.binding_key,
            [m.upstream for m in self.route.members],
        )
        if session is None:
            # Another principal's session looks exactly like one that does not exist.
            raise SessionNotFound(f"unknown session for route {self.route.name}")
        return session

    async def _post(
        self,
        send: Send,
        headers: Mapping[str, str],
        ctx: CallContext,
        request: Message,
        seal: Seal | None,
        calls: list[Call],
        size: int,
    ) -> int:
        version = headers.get(H_PROTOCOL_VERSION)
        era = era_of(version)
        if version is not None and version not in KNOWN_VERSIONS:
            raise UnsupportedVersion(
                f"unsupported protocol version {version!r}",
                data={"supported": list(MODERN_VERSIONS), "requested": version},
            )
        forward = forwarded_headers(headers)
        session: GatewaySession | None = None
        if era == "modern":
            ctx = dataclasses.replace(ctx, era="modern")
            assert version is not None
            check_modern(request, headers, version)
            if request.method == "initialize" and request.kind == "request":
                raise MethodNotFound("initialize is not part of this protocol version")
        elif not (request.kind == "request" and request.method == "initialize"):
            session = await self._session(headers, ctx)
            ctx = dataclasses.replace(ctx, session_id=session.id)
        call = self.route.open(ctx, request, request_bytes=size)
        calls.append(call)
        await self.route.admit(call, session, forward)
        if request.kind != "request":
            up_status = await self.route.post(call, session, forward)
            if up_status == 404 and session is not None:
                await self.route.end_session(session, "upstream-ended")
                raise SessionNotFound("upstream session ended")
            status = 202 if up_status < 400 or session is None else 502
            await send_empty(send, status)
            return status
        if request.method == "initialize" and session is None and era == "handshake":
            new_session, reply = await self.route.initialize(call, forward)
            extra = [] if new_session is None else [(b"mcp-session-id", new_session.id.encode())]
            return await send_reply(send, reply, call, extra, seal, self.send_timeout)
        reply = await self.route.request(call, session, forward)
        return await send_reply(send, reply, call, [], seal, self.send_timeout)

    async def _get(
        self, send: Send, headers: Mapping[str, str], ctx: CallContext, calls: list[Call]
    ) -> int:
        if era_of(headers.get(H_PROTOCOL_VERSION)) == "modern":
            await send_empty(send, 405, [(b"allow", b"POST")])
            return 405
        if self.jwe_required:
            # A GET stream has no request body to carry the client's key: it cannot be
            # sealed, so where sealing is required there is no GET stream.
            await send_empty(send, 405, [(b"allow", b"POST, DELETE")])
            return 405
        if not _accepts(headers.get("accept"), "text/event-stream"):
            await send_empty(send, 406)
            return 406
        session = await self._session(headers, ctx)
        ctx = dataclasses.replace(ctx, session_id=session.id)
        forward = forwarded_headers(headers)
        call = self.route.open(ctx, LISTEN_MESSAGE)
        calls.append(call)
        await self.route.admit(call, session, forward)
        reply = await self.route.listen(call, session, forward)
        if reply is None:
            await send_empty(send, 405, [(b"allow", b"POST, DELETE")])
            return 405
        try:
            await sse_start(send)
            first = await anext(reply.events, None)
            await _stream(send, first, reply.events, call, None, self.send_timeout)
        finally:
            await reply.aclose()
        return 200

    async def _delete(self, send: Send, headers: Mapping[str, str], ctx: CallContext) -> int:
        if era_of(headers.get(H_PROTOCOL_VERSION)) == "modern":
            await send_empty(send, 405, [(b"allow", b"POST")])
            return 405
        session = await self._session(headers, ctx)
        await self.sessions.revoke(session)  # fleet-wide first: then no replica serves it
        await self.route.end_session(session)
        await send_empty(send, 200)
        return 200
