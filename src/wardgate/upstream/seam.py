"""The upstream seam: an :class:`Upstream` opens :class:`UpstreamSession` objects.

A session carries JSON-RPC messages to one upstream server and brings back a
:class:`Reply`: an HTTP-like status and a stream of :class:`Event` values (the
messages the server sent for that request, the final response last).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from wardgate.wire.jsonrpc import JsonObject

__all__ = ["Event", "Reply", "Upstream", "UpstreamSession", "single"]


@dataclass(frozen=True, slots=True)
class Event:
    """One message from upstream; ``message`` is ``None`` for a priming event."""

    message: JsonObject | None
    event_id: str | None = None
    retry_ms: int | None = None

    @property
    def is_response(self) -> bool:
        """A result or error: the final message for the request it answers."""
        return self.message is not None and "method" not in self.message


async def _one(event: Event) -> AsyncIterator[Event]:
    yield event


async def _none() -> AsyncIterator[Event]:
    return
    yield  # pragma: no cover - makes this an async generator


@dataclass(slots=True)
class Reply:
    """What came back for one message sent upstream.

    ``streaming`` says the upstream chose SSE; a relay may still answer with plain
    JSON when the stream turns out to hold only the final response.
    """

    events: AsyncIterator[Event]
    status: int = 200
    streaming: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    async def aclose(self) -> None:
        closer = getattr(self.events, "aclose", None)
        if closer is not None:
            await closer()


def single(message: JsonObject | None, status: int = 200) -> Reply:
    """A reply holding one message (or none, for 202)."""
    if message is None:
        return Reply(_none(), status=status)
    return Reply(_one(Event(message)), status=status)


class UpstreamSession(Protocol):
    """One logical session with one upstream server."""

    @property
    def alive(self) -> bool: ...

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        """Send a request; the reply streams what the server sends for it."""
        ...

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        """Send a notification or a response; returns the HTTP-like status (202)."""
        ...

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        """Open the standalone server-to-client stream; ``None`` when unsupported.

        ``headers`` carries ``Last-Event-ID`` when the client resumes.
        """
        ...

    async def close(self) -> None:
        """End the session (HTTP DELETE, or stop the process)."""
        ...


class Upstream(Protocol):
    """A configured upstream server."""

    name: str

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def open_session(self) -> UpstreamSession:
        """A fresh session, for one handshake-era client session."""
        ...

    def shared_session(self, key: str = "") -> UpstreamSession:
        """The pooled session used for stateless (2026) requests.

        ``key`` names the group of callers that may share a stateful session (see
        :mod:`wardgate.routing.isolation`); upstreams without per-session state (HTTP)
        ignore it.
        """
        ...
