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

import aiohttp
import orjson

from wardgate.errors import UpstreamError
from wardgate.routing.isolation import IsolationKey
from wardgate.upstream._pending import CallerView
from wardgate.upstream.channel import ChannelSession
from wardgate.wire.jsonrpc import Message
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
    ) -> None:
        self.name = name
        self.url = url
        self.headers = dict(headers or {})
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self._client: aiohttp.ClientSession | None = None
        self._shared: SseSession | None = None
        self._sessions: set[SseSession] = set()

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout)
        )
        # Shared by every caller of the route: nothing from the server is given to a
        # caller unless it belongs to that caller's request.
        self._shared = SseSession(self, dedicated=False, exclusive=False)

    async def aclose(self) -> None:
        sessions = [*self._sessions, *([self._shared] if self._shared else [])]
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> aiohttp.ClientSession:
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
        self._resp: aiohttp.ClientResponse | None = None
        self._post_url: str | None = None
        self._reader: asyncio.Task[None] | None = None

    def _running(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def _connect(self) -> None:
        headers = {**self._up.headers, "accept": "text/event-stream"}
        try:
            resp = await self._up.client.get(self._up.url, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"upstream {self._up.name} unreachable: {exc!r}") from None
        if resp.status != 200:
            resp.release()
            raise UpstreamError(f"upstream {self._up.name} SSE answered HTTP {resp.status}")
        self._resp = resp
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
        self._post_url = target

    async def _read(self, resp: aiohttp.ClientResponse, endpoint: asyncio.Future[str]) -> None:
        decoder = SseDecoder()
        buffer = bytearray()
        try:
            async for chunk in resp.content.iter_any():
                buffer += chunk
                if len(buffer) > self._up.max_message_bytes:
                    log.error("upstream %s sent an over-long SSE line", self._up.name)
                    return
                while (cut := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:cut]).rstrip(b"\r").decode("utf-8", "replace")
                    del buffer[: cut + 1]
                    event = decoder.feed_line(line)
                    if event is None:
                        continue
                    if event.event == "endpoint":
                        if not endpoint.done():
                            endpoint.set_result(event.data.strip())
                        continue
                    try:
                        message = Message.from_raw(orjson.loads(event.data))
                    except Exception:
                        log.warning("upstream %s sent a non-JSON-RPC event", self._up.name)
                        continue
                    self._dispatch(message)
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            log.warning("upstream %s stream broke: %r", self._up.name, exc)
        finally:
            resp.close()
            self._fail_pending()

    async def _abort(self, reason: str) -> None:
        log.error("upstream %s: %s; dropping its stream", self._up.name, reason)
        if self._reader is not None:
            self._reader.cancel()

    async def _send(self, data: bytes) -> None:
        if self._post_url is None:
            raise UpstreamError(f"upstream {self._up.name} is not connected")
        headers = {**self._up.headers, "content-type": "application/json"}
        try:
            async with self._up.client.post(
                self._post_url,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._up.request_timeout),
            ) as resp:
                if resp.status >= 400:
                    raise UpstreamError(
                        f"upstream {self._up.name} refused a message: HTTP {resp.status}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"upstream {self._up.name} unreachable: {exc!r}") from None

    async def close(self) -> None:
        self._mark_closed()
        self._up.forget(self)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
