"""Streamable HTTP upstreams (both eras), over one pooled keep-alive client each.

Every exchange with the upstream (a request, a notification, a DELETE) runs under one
deadline, ``request_timeout`` after it starts: the reply, streamed or not, must be over
by then, however the upstream paces it. Only the standalone GET stream, which is meant
to stay open, has none. Connection errors are translated in
:mod:`wardgate.upstream.http_client`; what the upstream says is judged here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from wardgate.errors import PayloadTooLarge, UpstreamError, UpstreamTimeout, WardgateError
from wardgate.upstream.http_client import HttpClient, HttpResponse
from wardgate.upstream.seam import Event, Reply, single
from wardgate.wire.jsonrpc import (
    DEFAULT_MAX_JSON_DEPTH,
    JsonObject,
    Message,
    dumps,
    loads_bounded,
)
from wardgate.wire.mcp import H_SESSION_ID
from wardgate.wire.sse import SseDecoder

__all__ = ["HttpSession", "HttpUpstream", "iter_sse"]

log = logging.getLogger("wardgate.upstream.http")

_ACCEPT = "application/json, text/event-stream"
#: How long to wait for an upstream to end its SSE stream after the final response.
_DRAIN_SECONDS = 0.25


def _message(data: bytes | str, max_depth: int) -> JsonObject:
    """One JSON-RPC message from an upstream.

    Raises:
        WardgateError: not JSON, nested too deep, or not JSON-RPC.
    """
    return Message.from_raw(loads_bounded(data, max_depth)).raw


async def iter_sse(
    chunks: AsyncIterator[bytes], max_bytes: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> AsyncIterator[Event]:
    """Decode an SSE byte stream into events carrying parsed JSON-RPC messages.

    A line, and an event's data across its lines, may not exceed ``max_bytes``; what is
    held in memory stays within that however long an event runs.

    Raises:
        UpstreamError: a line or an event is too large, or an event is not JSON-RPC
            (or nests deeper than ``max_depth``).
    """
    decoder = SseDecoder(max_bytes)
    buffer = bytearray()
    event_bytes = 0
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while True:
            cut = buffer.find(b"\n", start)
            if cut < 0:
                break
            line = bytes(buffer[start:cut]).rstrip(b"\r")
            start = cut + 1
            # In bytes, every field counted: a character bound alone would let
            # multi-byte text hold up to four times as much.
            event_bytes = event_bytes + len(line) if line else 0
            if event_bytes > max_bytes:
                raise UpstreamError("upstream SSE event exceeds the size limit")
            try:
                sse = decoder.feed_line(line.decode("utf-8", "replace"))
            except PayloadTooLarge:
                raise UpstreamError("upstream SSE event exceeds the size limit") from None
            if sse is None:
                continue
            if sse.event not in ("message", "") or not sse.data.strip():
                # A priming event (id, empty data) or an event type MCP does not use.
                if sse.id is not None or sse.retry is not None:
                    yield Event(None, sse.id, sse.retry)
                continue
            try:
                message = _message(sse.data, max_depth)
            except WardgateError as exc:
                raise UpstreamError(
                    f"upstream sent an SSE event that is not JSON-RPC: {exc.detail}"
                ) from None
            yield Event(message, sse.id, sse.retry)
        del buffer[:start]
        if len(buffer) > max_bytes:
            raise UpstreamError("upstream SSE line exceeds the size limit")


async def _replay(messages: list[JsonObject]) -> AsyncIterator[Event]:
    for message in messages:
        yield Event(message)


class HttpUpstream:
    """An MCP server reached over Streamable HTTP."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 300.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        max_connections: int = 100,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        ca_file: str | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.max_message_bytes = max_message_bytes
        self.max_json_depth = max_json_depth
        self._client = HttpClient(
            name,
            url,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            ca_file=ca_file,
        )
        self.target = self._client.target(url)
        self._started = False
        self._shared: HttpSession | None = None

    async def start(self) -> None:
        self._started = True
        self._shared = HttpSession(self, stateless=True)

    async def aclose(self) -> None:
        self._started = False
        await self._client.aclose()

    @property
    def client(self) -> HttpClient:
        if not self._started:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._client

    def base_headers(self) -> dict[str, str]:
        return dict(self._headers)

    def deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.request_timeout

    async def open_session(self) -> HttpSession:
        return HttpSession(self, stateless=False)

    def shared_session(self, key: str = "") -> HttpSession:
        if self._shared is None:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._shared


class HttpSession:
    """One session with an HTTP upstream; ``session_id`` is learnt from initialize."""

    def __init__(self, upstream: HttpUpstream, *, stateless: bool) -> None:
        self._up = upstream
        self._stateless = stateless
        self.session_id: str | None = None
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    def _headers(self, extra: Mapping[str, str], accept: str = _ACCEPT) -> dict[str, str]:
        headers = self._up.base_headers()
        headers.update(extra)
        headers["accept"] = accept
        if self.session_id is not None:
            headers[H_SESSION_ID] = self.session_id
        return headers

    async def _send(
        self,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        deadline: float | None,
    ) -> HttpResponse:
        if body is not None:
            headers["content-type"] = "application/json"
        return await self._up.client.request(
            method, self._up.target, headers, body, deadline=deadline
        )

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        deadline = self._up.deadline()
        resp = await self._send("POST", self._headers(headers), dumps(message), deadline)
        if not self._stateless and self.session_id is None:
            self.session_id = resp.headers.get(H_SESSION_ID)
        return await self._reply(resp)

    async def _reply(self, resp: HttpResponse) -> Reply:
        status = resp.status
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if status == 202:
            resp.release()
            return single(None, 202)
        if status == 404 and self.session_id is not None:
            self._alive = False
        if ctype == "text/event-stream" and status < 300:
            return Reply(self._events(resp), status=status, streaming=True)
        body = await self._read_body(resp)
        if status >= 500:
            raise UpstreamError(f"upstream {self._up.name} answered HTTP {status}")
        if not body:
            return single(None, status)
        try:
            value: Any = loads_bounded(body, self._up.max_json_depth)
            if isinstance(value, list) and value:
                # Several messages in one body (notifications, then the response):
                # relay them all, in order, as a stream would carry them.
                messages = [Message.from_raw(item).raw for item in value]
                return Reply(_replay(messages), status=status, streaming=len(messages) > 1)
            return single(Message.from_raw(value).raw, status)
        except WardgateError as exc:
            if status >= 400:
                # A bare HTTP error with no JSON-RPC body: relay the status only.
                return single(None, status)
            raise UpstreamError(
                f"upstream {self._up.name} answered HTTP {status} without JSON-RPC: {exc.detail}"
            ) from None

    async def _read_body(self, resp: HttpResponse) -> bytes:
        return await resp.read(self._up.max_message_bytes)

    async def _events(self, resp: HttpResponse) -> AsyncIterator[Event]:
        stream = iter_sse(resp.chunks(), self._up.max_message_bytes, self._up.max_json_depth)
        try:
            async for event in stream:
                if not event.is_response:
                    yield event
                    continue
                # The final response: the server ends the stream right after it. Read
                # that end before handing the response on, so the connection returns to
                # the pool instead of being closed under a consumer that stops here.
                tail: list[Event] = []
                try:
                    async with asyncio.timeout(_DRAIN_SECONDS):
                        async for extra in stream:
                            tail.append(extra)
                except (TimeoutError, UpstreamError):
                    pass  # the response is whole; what follows it is not waited for
                yield event
                for extra in tail:
                    yield extra
                return
        finally:
            # A stream read to its end leaves a reusable keep-alive connection; one
            # abandoned midway is closed, or the next caller would read its tail.
            resp.release()

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        deadline = self._up.deadline()
        resp = await self._send("POST", self._headers(headers), dumps(message), deadline)
        await self._drain(resp)
        if resp.status == 404 and self.session_id is not None:
            self._alive = False
        return resp.status

    async def _drain(self, resp: HttpResponse) -> None:
        try:
            async for _ in resp.chunks():
                pass
        finally:
            resp.release()

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        if self.session_id is None:
            return None
        # The standalone stream may sit idle for as long as the session lives; only
        # its head must come within the request timeout.
        try:
            async with asyncio.timeout(self._up.request_timeout):
                resp = await self._send(
                    "GET", self._headers(headers, "text/event-stream"), None, None
                )
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self._up.name} timed out") from None
        if resp.status == 405:
            resp.release()
            return None
        return await self._reply(resp)

    async def close(self) -> None:
        self._alive = False
        if self.session_id is None:
            return
        try:
            resp = await self._send("DELETE", self._headers({}), None, self._up.deadline())
            await self._drain(resp)
        except UpstreamError as exc:
            log.info("DELETE of upstream session on %s failed: %s", self._up.name, exc.detail)
