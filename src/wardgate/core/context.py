"""What every guard knows about a call, resolved once at the edge and the route.

Guards read these values; nothing re-derives them from headers. The context is read-only
by convention (not frozen, because one or two are built for every request and a frozen
dataclass costs several times as much to build): what a guard learns or decides during a
call lives on the :class:`~wardgate.core.call.Call`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wardgate.identity.principal import ANONYMOUS, Principal
from wardgate.wire.mcp import Era

__all__ = [
    "CallContext",
    "TlsFacts",
    "TraceContext",
    "Transport",
    "new_decision_id",
]

Transport = Literal["http", "sse", "stdio"]

_ID_POOL = bytearray()


def new_decision_id() -> str:
    """An unguessable id that follows one call through every event and error.

    Drawn 64 bits at a time from a pool filled by the OS CSPRNG (one syscall per
    512 ids instead of one per call).
    """
    if len(_ID_POOL) < 8:
        _ID_POOL.extend(secrets.token_bytes(4096))
    chunk = bytes(_ID_POOL[-8:])
    del _ID_POOL[-8:]
    return chunk.hex()


_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_TRACESTATE_MAX = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    """An incoming W3C trace context (``traceparent``, ``tracestate``), validated."""

    traceparent: str
    tracestate: str | None = None

    @property
    def trace_id(self) -> str:
        return self.traceparent[3:35]

    @property
    def parent_id(self) -> str:
        return self.traceparent[36:52]

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> TraceContext | None:
        """The trace context of a request, or ``None`` when absent or malformed.

        A malformed ``traceparent`` is ignored (a new trace starts), as W3C asks; an
        all-zero trace or parent id is malformed. ``tracestate`` without a valid
        ``traceparent`` is dropped, and an oversized one is cut.
        """
        raw = headers.get("traceparent")
        if raw is None:
            return None
        found = _TRACEPARENT.match(raw.strip().lower())
        if found is None or set(found[1]) == {"0"} or set(found[2]) == {"0"}:
            return None
        state = headers.get("tracestate")
        if state is not None:
            state = state[:_TRACESTATE_MAX] if state.isascii() else None
        return cls(found[0], state or None)


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """The TLS session a request arrived on (ASGI TLS extension)."""

    version: int | None
    cipher_suite: int | None
    peer_certificate: str | None = None
    spiffe_id: str | None = None

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], principal: Principal) -> TlsFacts | None:
        tls = (scope.get("extensions") or {}).get("tls")
        if not isinstance(tls, dict):
            return None
        chain = tls.get("client_cert_chain") or ()
        return cls(
            version=tls.get("tls_version"),
            cipher_suite=tls.get("cipher_suite"),
            peer_certificate=chain[0] if chain else None,
            spiffe_id=principal.subject if principal.method == "spiffe" else None,
        )


@dataclass(slots=True)
class CallContext:
    """What every guard knows about the call in hand; guards read it, never write it.

    ``upstream`` and ``target`` are resolved by the route before any guard runs: the
    upstream that will serve the call and the tool or prompt name (unprefixed on a
    federated route) or resource URI it names. ``received_at`` is wall-clock time from
    the gateway's injected clock, taken when the request arrived.
    """

    route: str
    decision_id: str = field(default_factory=new_decision_id)
    principal: Principal = ANONYMOUS
    era: Era = "handshake"
    transport: Transport = "http"
    session_id: str | None = None
    client_addr: str | None = None
    tls: TlsFacts | None = None
    received_at: float = 0.0
    trace: TraceContext | None = None
    upstream: str | None = None
    target: str | None = None
