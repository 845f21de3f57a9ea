"""The event seam: every step of a call emits a typed event to the configured sinks.

An :class:`EventSink` takes events synchronously and must not block: a sink that does
I/O buffers and drains on its own schedule (bounded, counting what it drops). The
:class:`EventBus` fans an event out to every sink and never lets a failing sink fail
the call. Events carry no secrets and no payloads: ids, names, outcomes and sizes.

Events are read-only by convention, not frozen: one is built for every call, and a frozen
dataclass costs several times as much to build (every field set through
``object.__setattr__``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

__all__ = [
    "AuthFailed",
    "CallEnded",
    "EventBus",
    "EventSink",
    "GatewayEvent",
    "GuardDecision",
    "SessionClosed",
    "SessionOpened",
    "UpstreamResult",
    "session_ref",
]

log = logging.getLogger("wardgate.telemetry")


def session_ref(session_id: str) -> str:
    """What events, logs and spans name a session by: the first 96 bits of SHA-256 of
    its id, never the id itself (an id read from a log must not work as a handle)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:24]


@dataclass(slots=True)
class GatewayEvent:
    """Base of every event; ``kind`` is its stable name in every sink."""

    kind: ClassVar[str] = "event"
    decision_id: str | None
    route: str | None


@dataclass(slots=True)
class SessionOpened(GatewayEvent):
    kind: ClassVar[str] = "session.opened"
    session_id: str
    subject: str
    tenant: str | None
    protocol_version: str


@dataclass(slots=True)
class SessionClosed(GatewayEvent):
    kind: ClassVar[str] = "session.closed"
    session_id: str
    reason: str


@dataclass(slots=True)
class AuthFailed(GatewayEvent):
    kind: ClassVar[str] = "auth.failed"
    cause: str
    client_addr: str | None


@dataclass(slots=True)
class GuardDecision(GatewayEvent):
    """A guard refused a call or a message (allowing is the silent default)."""

    kind: ClassVar[str] = "guard.decision"
    guard: str
    method: str | None
    target: str | None
    subject: str
    allowed: bool
    code: str | None
    reason: str


@dataclass(slots=True)
class UpstreamResult(GatewayEvent):
    """The upstream answered (or failed to) a call."""

    kind: ClassVar[str] = "upstream.result"
    upstream: str | None
    method: str | None
    status: str
    code: str | None
    detail: str


@dataclass(slots=True)
class CallEnded(GatewayEvent):
    """A call is over, whatever happened; the access log is this event."""

    kind: ClassVar[str] = "call.ended"
    method: str | None
    target: str | None
    upstream: str | None
    subject: str
    tenant: str | None
    transport: str
    era: str
    session_id: str | None
    status: str
    code: str | None
    http_status: int | None
    latency_ms: float
    request_bytes: int
    response_bytes: int
    messages: int


class EventSink(Protocol):
    """Takes events; must not block or raise (the bus logs what it raises anyway)."""

    def emit(self, event: GatewayEvent) -> None: ...


class EventBus:
    """Fans events out to sinks in order; a sink that raises is logged and skipped."""

    __slots__ = ("_sinks",)

    def __init__(self, sinks: Sequence[EventSink] = ()) -> None:
        self._sinks = tuple(sinks)

    @property
    def sinks(self) -> tuple[EventSink, ...]:
        return self._sinks

    def emit(self, event: GatewayEvent) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:
                log.exception("event sink %s failed on %s", type(sink).__name__, event.kind)
