"""One keep-alive HTTP/1.1 connection to an upstream: an :class:`asyncio.Protocol`
whose responses ``httptools`` (llhttp) parses, with the head and body bounds enforced
as bytes arrive. The pool around it is :mod:`wardgate.upstream.http_client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools

from wardgate.errors import UpstreamError, UpstreamTimeout

__all__ = ["HttpConnection"]

#: A streamed body is not read from the socket past this many unconsumed bytes.
_STREAM_HIGH_WATER = 256 * 1024


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; it parses one response at a time.

    ``on_lost`` is called once when the connection is gone (the pool forgets it).
    """

    def __init__(
        self,
        name: str,
        *,
        max_headers: int,
        max_head_bytes: int,
        on_lost: Callable[[HttpConnection], None],
    ) -> None:
        self._name = name
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._max_headers = max_headers
        self._max_head_bytes = max_head_bytes
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
            if self._partial_bytes > self._max_head_bytes:
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
        self._on_lost(self)
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
        self._fail(UpstreamTimeout(f"upstream {self._name} timed out"))

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
