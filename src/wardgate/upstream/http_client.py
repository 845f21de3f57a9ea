"""A lean keep-alive HTTP/1.1 client for one upstream origin.

Only what an MCP relay needs, on an :class:`asyncio.Protocol` with ``httptools`` (llhttp)
parsing the responses: a pool of keep-alive connections with a cap, ``Content-Length``
and chunked bodies, bodies read whole or streamed (SSE), HTTPS with certificate and
host name verification. It never follows a redirect and never decompresses.

Every bound is enforced while reading, before memory is spent: the status line and
headers together (``max_head_bytes``), the header count, the body (the limit
given to ``read``; a streamed body is held to a small buffer by pausing the socket).
Time is bounded twice: connecting (``connect_timeout``) and the whole call, from
sending the request to the last byte of the reply (``deadline``, an event-loop time);
a timer aborts the connection at the deadline whatever the upstream is doing, so a
slow trickle or endless keep-alive comments cannot stretch a call.

Socket, TLS and parser exceptions are translated to :mod:`wardgate.errors` here and in
:mod:`wardgate.upstream._http_connection` (the parser's), and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

from wardgate.errors import UpstreamError, UpstreamTimeout
from wardgate.upstream._http_connection import HttpConnection

__all__ = ["HttpClient", "HttpResponse"]

#: An idle connection older than this is closed rather than reused: servers commonly
#: drop idle keep-alive connections after 5 s, and a POST cannot be safely retried.
_IDLE_SECONDS = 4.0


class HttpResponse:
    """A response whose head has arrived; read its body whole or as a stream, once.

    Call :meth:`release` when done (``read`` does it): the connection goes back to the
    pool only when the body was read to its end.
    """

    __slots__ = ("_client", "_conn", "_released", "headers", "status")

    def __init__(self, client: HttpClient, conn: HttpConnection) -> None:
        self._client = client
        self._conn = conn
        self._released = False
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers

    async def read(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes.

        Raises:
            UpstreamError: the body is too large or the connection failed.
            UpstreamTimeout: the call's deadline passed.
        """
        conn = self._conn
        try:
            conn.limit_body(limit)
            if conn.error is not None:
                raise conn.error
            while not conn.complete:
                await conn.wait()
            return conn.take()
        finally:
            self.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the reader bounds what it keeps (the socket is paused
        while more than a small buffer waits unread).

        Raises:
            UpstreamError: the connection failed.
            UpstreamTimeout: the call's deadline passed.
        """
        conn = self._conn
        while True:
            if conn.body:
                yield conn.take()
            elif conn.complete:
                return
            else:
                await conn.wait()

    @property
    def complete(self) -> bool:
        return self._conn.complete and not self._conn.body

    def release(self) -> None:
        """Give the connection back (reused if the body was read to its end)."""
        if self._released:
            return
        self._released = True
        self._client._release(self._conn)


class HttpClient:
    """Requests to one origin (``scheme://host:port``) over pooled keep-alive connections.

    Construction does no I/O; connections open on demand, at most ``max_connections``
    in use at once (further requests wait for one, within their deadline).
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        max_connections: int = 100,
        connect_timeout: float = 10.0,
        max_head_bytes: int = 64 * 1024,
        max_headers: int = 100,
        ca_file: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.name = name
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._https = parts.scheme == "https"
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._https else 80)
        self._authority = host if default_port else f"{host}:{self._port}"
        self._ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        self.connect_timeout = connect_timeout
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[HttpConnection] = []
        self._open: set[HttpConnection] = set()
        self._closed = False

    def target(self, url: str) -> str:
        """The request target (path and query) of ``url``, which must be this origin's.

        Raises:
            UpstreamError: ``url`` names another origin.
        """
        parts = urlsplit(url)
        if (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) != (
            self._host,
            self._port,
        ) or (parts.scheme == "https") != self._https:
            raise UpstreamError(f"upstream {self.name}: {url!r} is not this upstream's origin")
        target = parts.path or "/"
        return f"{target}?{parts.query}" if parts.query else target

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        deadline: float | None,
    ) -> HttpResponse:
        """Send one request and wait for the response head.

        ``deadline`` (event-loop time) bounds the whole exchange, body included.

        Raises:
            UpstreamError: cannot connect, a header holds CR/LF, the response broke a
                limit or the connection failed.
            UpstreamTimeout: connecting took longer than ``connect_timeout`` or the
                deadline passed.
        """
        lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        # A CR, LF or NUL inside a name or value would smuggle a header or a request.
        if lines.count("\n") != len(headers) or lines.count("\r") != len(headers) or "\0" in lines:
            raise UpstreamError(f"upstream {self.name}: header with a control character")
        head = f"{method} {target} HTTP/1.1\r\nhost: {self._authority}\r\n{lines}"
        if body is not None:
            head += f"content-length: {len(body)}\r\n"
        data = (head + "\r\n").encode()
        if body:
            data += body
        conn = await self._acquire(deadline)
        try:
            conn.send(data, deadline)
            while not conn._head_done:
                await conn.wait()
        except BaseException:
            self._release(conn)
            raise
        return HttpResponse(self, conn)

    async def _acquire(self, deadline: float | None) -> HttpConnection:
        if self._closed:
            raise UpstreamError(f"upstream {self.name} is closed")
        loop = asyncio.get_running_loop()
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamTimeout(f"upstream {self.name}: no free connection") from None
        else:
            await self._slots.acquire()
        try:
            now = loop.time()
            while self._idle:
                conn = self._idle.pop()
                if not conn.lost and now - conn.idle_since < _IDLE_SECONDS:
                    conn.holds_slot = True
                    return conn
                if conn.transport is not None:
                    conn.transport.abort()
            conn = await self._connect(loop, deadline)
            conn.holds_slot = True
            return conn
        except BaseException:
            self._slots.release()
            raise

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> HttpConnection:
        timeout = self.connect_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - loop.time())
        if self._https and self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self._ca_file)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                _, conn = await loop.create_connection(
                    lambda: HttpConnection(
                        self.name,
                        max_headers=self.max_headers,
                        max_head_bytes=self.max_head_bytes,
                        on_lost=self._forget,
                    ),
                    self._host,
                    self._port,
                    ssl=self._ssl if self._https else None,
                    server_hostname=self._host if self._https else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"upstream {self.name}: connect timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS verification
            raise UpstreamError(f"upstream {self.name} unreachable: {exc!r}") from None
        self._open.add(conn)
        return conn

    def _release(self, conn: HttpConnection) -> None:
        if conn.finish() and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        self._free_slot(conn)

    def _free_slot(self, conn: HttpConnection) -> None:
        if conn.holds_slot:
            conn.holds_slot = False
            self._slots.release()

    def _forget(self, conn: HttpConnection) -> None:
        # A connection that died (the deadline's abort included) frees its slot even
        # if its response is never released, so a caller that drops a reply without
        # closing it cannot leak the pool's capacity past its deadline.
        self._free_slot(conn)
        self._open.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    async def aclose(self) -> None:
        """Close every connection; requests after this fail."""
        self._closed = True
        for conn in list(self._open):
            if conn.transport is not None:
                conn.transport.abort()
        self._idle.clear()
