"""The HTTP listener's own bounds: read deadlines, head size, connection caps.

uvicorn has a keep-alive idle timeout and nothing else: a client that trickles its
request head or body, or simply holds sockets open, keeps them forever. The listener
here is uvicorn's httptools protocol with these bounds added, one
:class:`ConnectionTable` per listening server:

* **head deadline**: from the moment a connection is accepted, or the first byte of the
  next request on a keep-alive connection, the whole request head must arrive within
  ``header_timeout``; else the socket is closed.
* **body deadline**: from the end of the head, the whole body must arrive within
  ``body_timeout``; else the socket is closed (the application sees a disconnect).
* **head size**: more than ``max_header_bytes`` of request line and headers, or more
  than ``max_headers`` header fields, is answered 431 and the socket closed, before
  the application is called. (httptools itself has no limit.)
* **connections**: at most ``max_connections`` open at once, and at most
  ``max_connections_per_ip`` from one address. At the total cap a new socket displaces
  the connection that has waited longest *without a request in progress* (idle
  keep-alive or still sending its head): an attacker holding sockets cannot lock out
  clients that make real calls. Only when every connection has a call in flight is
  the new socket refused (503, then closed).
* **keep-alive**: at most ``max_requests_per_connection`` requests on one connection,
  and uvicorn's idle timeout between them.
* A response that completes before the application consumed the request body (a 413,
  a refusal before the body was read) closes the connection: what the client sends
  next on it can no longer be framed with confidence, so it is never served.

The protocol also adds the ASGI TLS extension when the connection is TLS (see
:mod:`wardgate.tls.uvicorn_tls`), so one class serves plain and TLS listeners.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from wardgate.edge.connections import (
    BAD_REQUEST,
    BODY_TIMEOUT,
    HEAD_TIMEOUT,
    HEAD_TOO_LARGE,
    ConnectionTable,
    ListenerLimits,
    client_key,
)
from wardgate.edge.write_coalescer import HeadCoalescingTransport
from wardgate.tls.uvicorn_tls import attach_tls

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]


_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\nretry-after: 1\r\nconnection: close\r\n\r\nService Unavailable"
)
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\nconnection: close\r\n\r\nRequest Header Fields Too Large"
)
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 11\r\nconnection: close\r\n\r\nBad Request"
)
#: Bytes counted per header field beyond its name and value (": " and CRLF).
_FIELD_OVERHEAD = 4
#: How long a refused connection's late input is read and dropped before closing.
_LINGER = 1.0


class _HeadTooLarge(Exception):
    """Raised inside a parser callback; ``data_received`` turns it into a 431."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the listener bounds; see :func:`guarded_protocol`."""

    limits: ClassVar[ListenerLimits]
    table: ClassVar[ConnectionTable]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Literal["none", "head", "body"] = "none"
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received since the head began (a bound, not exact)
        self._head_size = 0  # request line and fields as parsed (exact)
        self._head_fields = 0
        self._requests = 0
        self._admitted = False
        self._lingering = False
        self._running: RequestResponseCycle | None = None

    # -- connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        attach_tls(self, transport)
        if not self.table.admit(self, client_key(self.client[0] if self.client else "")):
            transport.write(_REFUSED)
            transport.close()
            return
        # Request cycles write through it: a response's head leaves with its body.
        self.transport = HeadCoalescingTransport(transport, self.loop)
        self._admitted = True
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.table.release(self)
        super().connection_lost(exc)

    @property
    def waiting(self) -> bool:
        """No request in flight: idle between requests, or still sending a head."""
        if self._phase == "body" or self.pipeline:
            return False
        return self.cycle is None or self.cycle.response_complete

    def drop(self) -> None:
        """Close now, discarding anything not yet written (the peer is not waiting for it)."""
        self._cancel_timers()
        self.table.release(self)
        if not self.transport.is_closing():
            self.transport.abort()

    # -- reading -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._admitted or self._lingering or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._phase == "none" and self._head_timer is None and self._idle():
            # Bytes between requests start the next head's clock, even if they are
            # only the blank lines the parser skips before a request line.
            self._arm_head_timer()
        if self._head_timer is not None:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(_HEAD_TOO_LARGE, HEAD_TOO_LARGE)
            else:
                self._refuse(_BAD_REQUEST, BAD_REQUEST)
            return
        except httptools.HttpParserUpgrade:
            # No protocol to upgrade to (websockets are off): the request is served as
            # plain HTTP, as uvicorn does, but the parser reads nothing more after it,
            # so the connection closes after the answer.
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
            else:
                self._refuse(_BAD_REQUEST, BAD_REQUEST)
            return
        except httptools.HttpParserError:
            self._refuse(_BAD_REQUEST, BAD_REQUEST)
            return
        # Only while a head is still being read: the bytes of a chunk that also held a
        # complete head and its body were counted, but belong to the body.
        if (
            self._head_timer is not None
            and self._phase != "body"
            and self._head_bytes > self.limits.max_header_bytes
        ):
            self._refuse(_HEAD_TOO_LARGE, HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        if self._head_timer is None:
            self._arm_head_timer()
        self._phase = "head"
        self._head_size = 0
        self._head_fields = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.limits.max_header_bytes:
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + _FIELD_OVERHEAD
        self._head_fields += 1
        if (
            self._head_size > self.limits.max_header_bytes
            or self._head_fields > self.limits.max_headers
        ):
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._phase = "body"
        self._requests += 1
        # Starts the request now (and its body clock, in _start_asgi_task), or queues
        # it behind the one in flight with reading paused: its clock waits for its turn.
        super().on_headers_complete()
        if self._requests >= self.limits.max_requests_per_connection:
            self.cycle.keep_alive = False  # this response says "connection: close"

    def on_message_complete(self) -> None:
        self._phase = "none"
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # -- responses ---------------------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        if cycle is self.cycle and self._phase == "body" and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_expired)
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        cycle = self._running
        if (
            cycle is not None
            and (cycle.more_body or cycle.body)
            and not self.transport.is_closing()
        ):
            # Answered before the body was consumed (413, an early refusal): whatever
            # follows on this connection is not served.
            self.transport.close()
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self.table.touch(self)

    # -- timers ------------------------------------------------------------------

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        # Stray bytes while a response is still being produced do not cut that call.
        if self._phase == "head" or self._idle():
            self.table.note(HEAD_TIMEOUT, self._peer())
            self.drop()

    def _body_expired(self) -> None:
        self._body_timer = None
        if self._phase == "body":
            self.table.note(BODY_TIMEOUT, self._peer())
            self.drop()

    def _refuse(self, response: bytes, event: str) -> None:
        """Answer ``response`` and close; read and discard for a moment first.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the answer before the client reads it: so, like a lingering close,
        send FIN, drop what still arrives, and close when the peer does or soon after.
        """
        self._cancel_timers()
        self.table.note(event, self._peer())
        self._lingering = True
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(response)
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        transport.write_eof()
        self._head_timer = self.loop.call_later(_LINGER, self.drop)

    def _peer(self) -> str:
        return self.client[0] if self.client else "?"


def guarded_protocol(limits: ListenerLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=…)`` enforcing ``limits``.

    Each call makes a class with its own :class:`ConnectionTable` (``cls.table``): one
    per listening server.
    """
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "table": ConnectionTable(limits)},
    )
