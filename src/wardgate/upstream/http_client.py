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

Socket, TLS and parser exceptions are translated to :mod:`wardgate.errors` here and
nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from wardgate.errors import UpstreamError, UpstreamTimeout

__all__ = ["HttpClient", "HttpResponse"]

#: A streamed body is not read from the socket past this many unconsumed bytes.
_STREAM_HIGH_WATER = 256 * 1024
#: An idle connection older than this is closed rather than reused: servers commonly
#: drop idle keep-alive connections after 5 s, and a POST cannot be safely retried.
_IDLE_SECONDS = 4.0


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it parses one response at a time."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._max_headers = client.max_headers
        self._max_head_bytes = client.max_head_bytes
        #: Whether this connection counts against the pool's cap right now.
        self.holds_slot = False
        self._begin(None)

    def _begin(self, body_limit: int | None) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.error: UpstreamError | None = None
        self.body = bytearray()
        self._body_limit = body_limit
        self._body_bytes = 0
        self._head_bytes = 0
        self._partial_bytes = 0
        self._head_done = False
        self._framed = False
        self._paused = False

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy or self.complete:
            # Bytes nobody asked for: the connection can no longer be trusted.
            self._fail(UpstreamError("upstream sent data outside a response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream tried to switch protocols"))
        except httptools.HttpParserError as exc:
            if self.error is None:
                self._fail(UpstreamError(f"upstream sent malformed HTTP: {exc}"))
        if not self._head_done and self.error is None:
            # A head still incomplete: what the parser holds of it is bounded too.
            self._partial_bytes += len(data)
            if self._partial_bytes > self._client.max_head_bytes:
                self._fail(UpstreamError("upstream response head exceeds the size limit"))
        if not self._paused and self._body_limit is None and len(self.body) > _STREAM_HIGH_WATER:
            self._paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._busy and not self.complete and self.error is None:
            if (
                self._head_done
                and not self._framed
                and self.status >= 200
                and self.status not in (204, 304)
            ):
                # No Content-Length and not chunked: the body ran until the close.
                self.complete = True
            else:
                self.error = UpstreamError(f"upstream closed the connection: {exc!r}")
        self._cancel_timer()
        self._client._forget(self)
        self._wake()

    # -- httptools callbacks ------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Kept raw here, decoded once per response: this runs for every header line.
        raw = self._raw_headers
        raw.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if len(raw) > self._max_headers:
            self._fail(UpstreamError("upstream sent too many headers"))
        elif self._head_bytes > self._max_head_bytes:
            self._fail(UpstreamError("upstream response head exceeds the size limit"))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        raw = self._raw_headers
        self._raw_headers = []
        if 100 <= self.status < 200:
            # An interim response (we never send Expect, but tolerate one): its
            # headers are dropped and the final response follows on the same parser.
            return
        headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in raw}
        if len(headers) != len(raw):  # a repeated name: its values are joined
            headers = {}
            for n, v in raw:
                key, text = n.decode("latin-1").lower(), v.decode("latin-1")
                old = headers.get(key)
                headers[key] = text if old is None else f"{old}, {text}"
        self.headers = headers
        self._framed = "content-length" in headers or (
            "chunked" in headers.get("transfer-encoding", "").lower()
        )
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_limit is not None and self._body_bytes > self._body_limit:
            self._fail(UpstreamError("upstream response exceeds the size limit"))
            return
        self.body += body

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an interim 1xx response
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True

    # -- used by HttpClient / HttpResponse ----------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _expire(self) -> None:
        self._timer = None
        self._fail(UpstreamTimeout(f"upstream {self._client.name} timed out"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for more of the response.

        Raises:
            UpstreamError: the connection failed, broke a limit or hit the deadline.
        """
        if self.error is not None:
            raise self.error
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        data = bytes(self.body)
        self.body.clear()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def limit_body(self, limit: int) -> None:
        """Read the rest of the body whole, failing once it exceeds ``limit`` bytes."""
        declared = self.headers.get("content-length", "")
        if self._body_bytes > limit or (declared.isdigit() and int(declared) > limit):
            self._fail(UpstreamError("upstream response exceeds the size limit"))
            return
        self._body_limit = limit
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def send(self, data: bytes, deadline: float | None) -> None:
        self._begin(None)
        self._busy = True
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)
        assert self.transport is not None
        self.transport.write(data)

    def finish(self) -> bool:
        """End the exchange; ``True`` when the connection may be reused."""
        self._cancel_timer()
        self._busy = False
        reusable = self.complete and self.keep_alive and self.error is None and not self.lost
        if not reusable and self.transport is not None:
            self.transport.abort()
        return reusable


class HttpResponse:
    """A response whose head has arrived; read its body whole or as a stream, once.

    Call :meth:`release` when done (``read`` does it): the connection goes back to the
    pool only when the body was read to its end.
    """

    __slots__ = ("_client", "_conn", "_released", "headers", "status")

    def __init__(self, client: HttpClient, conn: _Connection) -> None:
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
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
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

    async def _acquire(self, deadline: float | None) -> _Connection:
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
    ) -> _Connection:
        timeout = self.connect_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - loop.time())
        if self._https and self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self._ca_file)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self),
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

    def _release(self, conn: _Connection) -> None:
        if conn.finish() and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        self._free_slot(conn)

    def _free_slot(self, conn: _Connection) -> None:
        if conn.holds_slot:
            conn.holds_slot = False
            self._slots.release()

    def _forget(self, conn: _Connection) -> None:
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
