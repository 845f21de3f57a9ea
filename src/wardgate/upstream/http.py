"""Streamable HTTP upstreams (both eras), over one pooled aiohttp client.

aiohttp and asyncio exceptions are translated to :mod:`wardgate.errors` here and
nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
import orjson

from wardgate.errors import UpstreamError, UpstreamTimeout
from wardgate.upstream.seam import Event, Reply, single
from wardgate.wire.jsonrpc import JsonObject, Message
from wardgate.wire.mcp import H_SESSION_ID
from wardgate.wire.sse import SseDecoder

__all__ = ["HttpSession", "HttpUpstream", "iter_sse"]

log = logging.getLogger("wardgate.upstream.http")

_ACCEPT = "application/json, text/event-stream"
#: How long to wait for an upstream to end its SSE stream after the final response.
_DRAIN_SECONDS = 0.25


async def iter_sse(chunks: AsyncIterator[bytes], max_line: int) -> AsyncIterator[Event]:
    """Decode an SSE byte stream into events carrying parsed JSON-RPC messages.

    Raises:
        UpstreamError: a line is longer than ``max_line`` or an event is not JSON-RPC.
    """
    decoder = SseDecoder()
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                if len(buffer) > max_line:
                    raise UpstreamError("upstream SSE line exceeds the size limit")
                break
            line = bytes(buffer[:cut]).rstrip(b"\r")
            del buffer[: cut + 1]
            sse = decoder.feed_line(line.decode("utf-8", "replace"))
            if sse is None:
                continue
            if sse.event not in ("message", "") or not sse.data.strip():
                # A priming event (id, empty data) or an event type MCP does not use.
                if sse.id is not None or sse.retry is not None:
                    yield Event(None, sse.id, sse.retry)
                continue
            try:
                message = Message.from_raw(orjson.loads(sse.data)).raw
            except Exception as exc:
                raise UpstreamError(
                    f"upstream sent an SSE event that is not JSON-RPC: {exc}"
                ) from None
            yield Event(message, sse.id, sse.retry)


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
    ) -> None:
        self.name = name
        self.url = url
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=request_timeout
        )
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
        self.max_message_bytes = max_message_bytes
        self._max_connections = max_connections
        self._client: aiohttp.ClientSession | None = None
        self._shared: HttpSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ttl_dns_cache=60, enable_cleanup_closed=True
        )
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            # Redirects would let an upstream point the gateway anywhere.
            raise_for_status=False,
        )
        self._shared = HttpSession(self, stateless=True)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._client

    def base_headers(self) -> dict[str, str]:
        return dict(self._headers)

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
        self, method: str, headers: dict[str, str], body: bytes | None, idle_ok: bool
    ) -> aiohttp.ClientResponse:
        try:
            return await self._up.client.request(
                method,
                self._up.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                # Only the standalone GET stream may sit idle; a POST reply must keep coming.
                timeout=self._up._stream_timeout if idle_ok else self._up._timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self._up.name} timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {self._up.name} unreachable: {exc!r}") from None

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        out = self._headers(headers)
        out["content-type"] = "application/json"
        resp = await self._send("POST", out, orjson.dumps(message), idle_ok=False)
        if not self._stateless and self.session_id is None:
            self.session_id = resp.headers.get(H_SESSION_ID)
        return await self._reply(resp, message.get("id"))

    async def _reply(self, resp: aiohttp.ClientResponse, request_id: object) -> Reply:
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if resp.status == 202:
            resp.release()
            return single(None, 202)
        if resp.status == 404 and self.session_id is not None:
            self._alive = False
        if ctype == "text/event-stream" and resp.status < 300:
            return Reply(self._events(resp), status=resp.status, streaming=True)
        try:
            body = await self._read_body(resp)
        finally:
            resp.release()
        if resp.status >= 500:
            raise UpstreamError(f"upstream {self._up.name} answered HTTP {resp.status}")
        try:
            message = Message.from_raw(orjson.loads(body)).raw if body else None
        except Exception:
            if resp.status >= 400:
                # A bare HTTP error with no JSON-RPC body: relay the status only.
                return single(None, resp.status)
            raise UpstreamError(
                f"upstream {self._up.name} answered HTTP {resp.status} without JSON-RPC"
            ) from None
        return single(message, resp.status)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self._up.max_message_bytes
        length = resp.content_length
        if length is not None and length > limit:
            raise UpstreamError(f"upstream {self._up.name} response exceeds {limit} bytes")
        try:
            body = await resp.content.read(limit + 1)
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self._up.name} timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {self._up.name} failed: {exc!r}") from None
        if len(body) > limit:
            raise UpstreamError(f"upstream {self._up.name} response exceeds {limit} bytes")
        return body

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        complete = False
        stream = iter_sse(resp.content.iter_any(), self._up.max_message_bytes)
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
                    complete = True
                except TimeoutError:
                    pass
                yield event
                for extra in tail:
                    yield extra
                return
            complete = True
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"upstream {self._up.name} stream broke: {exc!r}") from None
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self._up.name} timed out") from None
        finally:
            # A stream read to its end leaves a reusable keep-alive connection; one
            # abandoned midway must be closed, or the next caller would read its tail.
            if complete:
                resp.release()
            else:
                resp.close()

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        out = self._headers(headers)
        out["content-type"] = "application/json"
        resp = await self._send("POST", out, orjson.dumps(message), idle_ok=False)
        try:
            if resp.status == 404 and self.session_id is not None:
                self._alive = False
            return resp.status
        finally:
            resp.release()

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        if self.session_id is None:
            return None
        resp = await self._send(
            "GET", self._headers(headers, "text/event-stream"), None, idle_ok=True
        )
        if resp.status == 405:
            resp.release()
            return None
        return await self._reply(resp, None)

    async def close(self) -> None:
        self._alive = False
        if self.session_id is None:
            return
        try:
            resp = await self._send("DELETE", self._headers({}), None, idle_ok=False)
            resp.release()
        except UpstreamError as exc:
            log.info("DELETE of upstream session on %s failed: %s", self._up.name, exc.detail)
