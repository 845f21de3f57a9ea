"""Streamable HTTP, both eras, on one endpoint: ``POST``, ``GET`` and ``DELETE``.

The era is chosen per request from ``MCP-Protocol-Version`` as the official SDK does.
Handshake-era requests live in a gateway session (``Mcp-Session-Id``); stateless
(2026-07-28) requests have their headers checked against the body and go to the
upstream's pooled session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import orjson

from wardgate.core.pipeline import CallContext
from wardgate.edge.asgi import (
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_empty,
    send_json,
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
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import Message, parse_message, wardgate_error_response
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


async def _send_message(
    send: Send, status: int, message: object, headers: list[tuple[bytes, bytes]], seal: Seal | None
) -> None:
    if seal is None:
        await send_json(send, status, message, headers)
    else:
        await send_bytes(send, status, seal(orjson.dumps(message)), JOSE.encode(), headers)


async def send_reply(
    send: Send,
    reply: Reply,
    ctx: CallContext,
    request: Message,
    extra_headers: list[tuple[bytes, bytes]],
    seal: Seal | None = None,
) -> int:
    """Relay an upstream reply: plain JSON when it is one response, else SSE.

    With ``seal`` (JWE), every message body is encrypted to the client.
    """
    events = reply.events
    try:
        if reply.status == 202:
            await send_empty(send, 202, extra_headers)
            return 202
        first = await anext(events, None)
        if first is None:
            error = UpstreamError("upstream sent no response")
            body = wardgate_error_response(request.id, error, ctx.decision_id)
            await _send_message(send, 502, body, extra_headers, seal)
            return 502
        if first.is_response and first.event_id is None and first.retry_ms is None:
            status = reply.status if reply.status < 500 else 502
            await _send_message(send, status, first.message, extra_headers, seal)
            return status
        await sse_start(send, extra_headers)
        event = first
        while True:
            data = None if event.message is None else orjson.dumps(event.message)
            if data is not None and seal is not None:
                data = seal(data)
            chunk = encode_event(data, event_id=event.event_id, retry=event.retry_ms)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            nxt = await anext(events, None)
            if nxt is None:
                break
            event = nxt
        await send({"type": "http.response.body", "body": b""})
        return 200
    finally:
        await reply.aclose()


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
    ) -> None:
        self.route = route
        self.sessions = sessions
        self.max_body = max_body_bytes
        self.auth = auth
        self.jwe = jwe
        self.jwe_required = jwe_required

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], ctx: CallContext
    ) -> None:
        started = time.perf_counter()
        method = scope["method"]
        status = 500
        request: Message | None = None
        seal: Seal | None = None
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
                request = parse_message(body)
                async with watch_disconnect(receive):
                    status = await self._post(send, headers, ctx, request, seal)
            elif method == "GET":
                async with watch_disconnect(receive):
                    status = await self._get(send, headers, ctx)
            elif method == "DELETE":
                status = await self._delete(send, headers, ctx)
            else:
                status = 405
                await send_empty(send, 405, [(b"allow", b"GET, POST, DELETE")])
        except WardgateError as exc:
            status = status if status in (406, 415) else exc.http_status
            request_id = request.id if request is not None and request.kind == "request" else None
            log.info(
                "refused: %s",
                exc.detail,
                extra={"decision_id": ctx.decision_id, "route": self.route.name, "code": exc.code},
            )
            extra = (
                self.auth.error_headers(exc, self.route.name, scope, headers)
                if self.auth is not None
                else []
            )
            error = wardgate_error_response(request_id, exc, ctx.decision_id)
            await _send_message(send, status, error, extra, seal)
        finally:
            access.info(
                "%s %s",
                method,
                request.method if request is not None else "-",
                extra={
                    "decision_id": ctx.decision_id,
                    "route": self.route.name,
                    "status": status,
                    "mcp_method": request.method if request is not None else None,
                    "mcp_name": request.target_name if request is not None else None,
                    "subject": ctx.principal.subject,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    def _session(self, headers: Mapping[str, str], ctx: CallContext) -> GatewaySession:
        sid = headers.get(H_SESSION_ID)
        if sid is None:
            raise ProtocolError("Bad Request: Missing session ID")
        session = self.sessions.get(sid)
        if (
            session is None
            or session.route != self.route.name
            or session.owner != ctx.principal.binding_key
        ):
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
    ) -> int:
        version = headers.get(H_PROTOCOL_VERSION)
        era = era_of(version)
        if version is not None and version not in KNOWN_VERSIONS:
            raise UnsupportedVersion(
                f"unsupported protocol version {version!r}",
                data={"supported": list(MODERN_VERSIONS), "requested": version},
            )
        forward = forwarded_headers(headers)
        if era == "modern":
            ctx = CallContext(ctx.route, ctx.decision_id, ctx.principal, "modern", ctx.transport)
            assert version is not None
            check_modern(request, headers, version)
            if request.kind == "notification":
                status = await self.route.post(ctx, request, None, forward)
                await send_empty(send, 202)
                return 202 if status < 400 else status
            if request.method in ("initialize",):
                raise MethodNotFound("initialize is not part of this protocol version")
            reply = await self.route.request(ctx, request, None, forward)
            return await send_reply(send, reply, ctx, request, [], seal)
        if request.kind == "request" and request.method == "initialize":
            session, reply = await self.route.initialize(ctx, request, forward)
            extra = [] if session is None else [(b"mcp-session-id", session.id.encode())]
            return await send_reply(send, reply, ctx, request, extra, seal)
        session = self._session(headers, ctx)
        ctx = CallContext(
            ctx.route, ctx.decision_id, ctx.principal, "handshake", ctx.transport, session.id
        )
        if request.kind == "request":
            reply = await self.route.request(ctx, request, session, forward)
            return await send_reply(send, reply, ctx, request, [], seal)
        status = await self.route.post(ctx, request, session, forward)
        if status == 404:
            await self.route.end_session(session)
            raise SessionNotFound("upstream session ended")
        await send_empty(send, 202 if status < 400 else 502)
        return 202

    async def _get(self, send: Send, headers: Mapping[str, str], ctx: CallContext) -> int:
        if era_of(headers.get(H_PROTOCOL_VERSION)) == "modern":
            await send_empty(send, 405, [(b"allow", b"POST")])
            return 405
        if not _accepts(headers.get("accept"), "text/event-stream"):
            await send_empty(send, 406)
            return 406
        session = self._session(headers, ctx)
        ctx = CallContext(
            ctx.route, ctx.decision_id, ctx.principal, "handshake", ctx.transport, session.id
        )
        reply = await self.route.listen(ctx, session, forwarded_headers(headers))
        if reply is None:
            await send_empty(send, 405, [(b"allow", b"POST, DELETE")])
            return 405
        events = reply.events
        try:
            await sse_start(send)
            async for event in events:
                data = None if event.message is None else orjson.dumps(event.message)
                chunk = encode_event(data, event_id=event.event_id, retry=event.retry_ms)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await reply.aclose()
        return 200

    async def _delete(self, send: Send, headers: Mapping[str, str], ctx: CallContext) -> int:
        if era_of(headers.get(H_PROTOCOL_VERSION)) == "modern":
            await send_empty(send, 405, [(b"allow", b"POST")])
            return 405
        session = self._session(headers, ctx)
        await self.route.end_session(session)
        await send_empty(send, 200)
        return 200
