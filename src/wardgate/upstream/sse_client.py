"""Legacy HTTP+SSE (2024-11-05) upstreams: one GET stream in, POSTs out.

The ``endpoint`` event must name a URL of the same origin as the SSE URL: an upstream
cannot point the gateway's POSTs at another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

from wardgate.errors import PayloadTooLarge, UpstreamError
from wardgate.routing.isolation import IsolationKey
from wardgate.upstream._decode import decode_channel_message
from wardgate.upstream._pending import CallerView
from wardgate.upstream.channel import ChannelSession
from wardgate.upstream.http_client import HttpClient, HttpResponse
from wardgate.wire.jsonrpc import (
    DEFAULT_MAX_JSON_DEPTH,
)
from wardgate.wire.sse import SseDecoder

__all__ = ["SseSession", "SseUpstream"]

log = logging.getLogger("wardgate.upstream.sse_client")


class SseUpstream:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        request_timeout: float = 300.0,
        connect_timeout: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        self.name = name
        self.url = url
        self.headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self.max_json_depth = max_json_depth
        self._client: HttpClient | None = None
        self._shared: SseSession | None = None
        self._sessions: set[SseSession] = set()

    async def start(self) -> None:
        self._client = HttpClient(self.name, self.url, connect_timeout=self.connect_timeout)
        # Shared by every caller of the route: nothing from the server is given to a
        # caller unless it belongs to that caller's request.
        self._shared = SseSession(self, dedicated=False, exclusive=False)

    async def aclose(self) -> None:
        sessions = [*self._sessions, *([self._shared] if self._shared else [])]
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._client

    async def open_session(self) -> SseSession:
        session = SseSession(self)
        self._sessions.add(session)
        return session

    def shared_session(self, key: str = "") -> CallerView:
        """The caller's view of the one shared stream: ids, cancellations and progress
        scoped to the caller named by ``key`` (:mod:`wardgate.routing.isolation`).

        Raises:
            UpstreamError: the upstream is not started.
        """
        if self._shared is None:
            raise UpstreamError(f"upstream {self.name} is not started")
        return self._shared.caller(IsolationKey.parse(key).caller)

    def forget(self, session: SseSession) -> None:
        self._sessions.discard(session)


class SseSession(ChannelSession):
    def __init__(
        self, upstream: SseUpstream, *, dedicated: bool = True, exclusive: bool = True
    ) -> None:
        super().__init__(
            upstream.name, upstream.request_timeout, dedicated=dedicated, exclusive=exclusive
        )
        self._up = upstream
        self._post_target: str | None = None
        self._reader: asyncio.Task[None] | None = None

    def _running(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def _connect(self) -> None:
        headers = {**self._up.headers, "accept": "text/event-stream"}
        client = self._up.client
        try:
            # The stream itself has no deadline (it lives as long as the session);
            # its head must come within the connect timeout.
            async with asyncio.timeout(self._up.connect_timeout):
                resp = await client.request(
                    "GET", client.target(self._up.url), headers, deadline=None
                )
        except TimeoutError:
            raise UpstreamError(f"upstream {self._up.name} SSE stream did not open") from None
        if resp.status != 200:
            resp.release()
            raise UpstreamError(f"upstream {self._up.name} SSE answered HTTP {resp.status}")
        endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(resp, endpoint))
        try:
            url = await asyncio.wait_for(endpoint, self._up.connect_timeout)
        except TimeoutError:
            self._reader.cancel()
            raise UpstreamError(f"upstream {self._up.name} sent no endpoint event") from None
        target = urljoin(self._up.url, url)
        base, new = urlsplit(self._up.url), urlsplit(target)
        if (base.scheme, base.netloc) != (new.scheme, new.netloc):
            self._reader.cancel()
            raise UpstreamError(f"upstream {self._up.name} endpoint points to another origin")
        self._post_target = client.target(target)

    async def _read(self, resp: HttpResponse, endpoint: asyncio.Future[str]) -> None:
        limit = self._up.max_message_bytes
        decoder = SseDecoder(limit)
        buffer = bytearray()
        event_bytes = 0
        try:
            async for chunk in resp.chunks():
                buffer += chunk
                start = 0
                while (cut := buffer.find(b"\n", start)) >= 0:
                    raw = bytes(buffer[start:cut]).rstrip(b"\r")
                    start = cut + 1
                    event_bytes = event_bytes + len(raw) if raw else 0
                    if event_bytes > limit:
                        raise PayloadTooLarge("SSE event exceeds the size limit")
                    event = decoder.feed_line(raw.decode("utf-8", "replace"))
                    if event is None:
                        continue
                    if event.event == "endpoint":
                        if not endpoint.done():
                            endpoint.set_result(event.data.strip())
                        continue
                    self._deliver(event.data)
                del buffer[:start]
                if len(buffer) > limit:
                    log.error("upstream %s sent an over-long SSE line", self._up.name)
                    return
        except PayloadTooLarge:
            log.error("upstream %s sent an over-long SSE event", self._up.name)
        except UpstreamError as exc:
            log.warning("upstream %s stream broke: %s", self._up.name, exc.detail)
        finally:
            resp.release()
            self._fail_pending()

    def _deliver(self, data: str) -> None:
        message = decode_channel_message(data, self._up.max_json_depth, self._up.name)
        if message is not None:
            self._dispatch(message)

    async def _send(self, data: bytes) -> None:
        if self._post_target is None:
            raise UpstreamError(f"upstream {self._up.name} is not connected")
        headers = {**self._up.headers, "content-type": "application/json"}
        deadline = asyncio.get_running_loop().time() + self._up.request_timeout
        resp = await self._up.client.request(
            "POST", self._post_target, headers, data, deadline=deadline
        )
        await resp.read(self._up.max_message_bytes)
        if resp.status >= 400:
            raise UpstreamError(f"upstream {self._up.name} refused a message: HTTP {resp.status}")

    async def close(self) -> None:
        self._mark_closed()
        self._up.forget(self)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader

    async def _abort(self, reason: str) -> None:
        log.error("upstream %s: %s; dropping its stream", self._up.name, reason)
        if self._reader is not None:
            self._reader.cancel()
