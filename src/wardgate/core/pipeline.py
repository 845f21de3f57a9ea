"""The guard pipeline: request guards first to last, response guards last to first.

A guard is a small object with one async method per phase it takes part in, and a
``methods`` set naming the MCP methods it applies to (``None``: every message). The
upstream call is the terminal step and lives outside this module. An exception that
is not a :class:`~wardgate.errors.WardgateError` denies the call (fail closed) unless
the guard sets ``fail_open``; that choice is logged every time it is used.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from wardgate.errors import Denied, WardgateError
from wardgate.identity.principal import ANONYMOUS, Principal
from wardgate.wire.jsonrpc import Message
from wardgate.wire.mcp import Era

__all__ = [
    "CallContext",
    "Pipeline",
    "RequestGuard",
    "ResponseGuard",
    "new_decision_id",
]

log = logging.getLogger("wardgate.core.pipeline")


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


@dataclass(frozen=True, slots=True)
class CallContext:
    """What every guard knows about the call in hand."""

    route: str
    decision_id: str = field(default_factory=new_decision_id)
    principal: Principal = ANONYMOUS
    era: Era = "handshake"
    transport: str = "http"
    session_id: str | None = None


@runtime_checkable
class RequestGuard(Protocol):
    name: str
    methods: frozenset[str] | None
    fail_open: bool

    async def check_request(self, ctx: CallContext, message: Message) -> Message:
        """Return the message to forward (maybe rewritten).

        Raises:
            Denied: the call must not reach the upstream.
        """
        ...


@runtime_checkable
class ResponseGuard(Protocol):
    name: str
    methods: frozenset[str] | None
    fail_open: bool

    async def check_response(
        self, ctx: CallContext, request: Message | None, message: Message
    ) -> Message:
        """Return the message to deliver (maybe rewritten).

        ``request`` is the client request this message answers or relates to, or
        ``None`` for messages on a standalone stream.

        Raises:
            Denied: the message must not reach the client.
        """
        ...


def _response_methods(guard: ResponseGuard) -> frozenset[str] | None:
    """A guard may narrow its response phase with ``response_methods``."""
    methods: frozenset[str] | None = getattr(guard, "response_methods", guard.methods)
    return methods


def _applies(methods: frozenset[str] | None, method: str | None) -> bool:
    return methods is None or (method is not None and method in methods)


class Pipeline:
    """An ordered list of guards, split into its two phases once at construction."""

    def __init__(self, guards: Sequence[RequestGuard | ResponseGuard] = ()) -> None:
        self.guards = tuple(guards)
        self._request = tuple(g for g in guards if isinstance(g, RequestGuard))
        self._response = tuple(reversed([g for g in guards if isinstance(g, ResponseGuard)]))
        self._responds: dict[str | None, bool] = {}

    @property
    def has_response_guards(self) -> bool:
        return bool(self._response)

    def responds_to(self, method: str | None) -> bool:
        """Whether any response guard applies to replies to ``method``."""
        cached = self._responds.get(method)
        if cached is None:
            cached = any(_applies(_response_methods(g), method) for g in self._response)
            self._responds[method] = cached
        return cached

    async def check_request(self, ctx: CallContext, message: Message) -> Message:
        """Run the request guards in order.

        Raises:
            WardgateError: a guard denied the message, or failed (closed).
        """
        for guard in self._request:
            if _applies(guard.methods, message.method):
                message = await _run(ctx, guard, guard.check_request(ctx, message), message)
        return message

    async def check_response(
        self, ctx: CallContext, request: Message | None, message: Message
    ) -> Message:
        """Run the response guards in reverse order.

        Raises:
            WardgateError: a guard denied the message, or failed (closed).
        """
        method = request.method if request is not None else message.method
        for guard in self._response:
            if _applies(_response_methods(guard), method):
                step = guard.check_response(ctx, request, message)
                message = await _run(ctx, guard, step, message)
        return message


async def _run(
    ctx: CallContext,
    guard: RequestGuard | ResponseGuard,
    step: Awaitable[Message],
    current: Message,
) -> Message:
    """One guard step: denials pass through, any other failure denies unless fail-open."""
    extra = {"decision_id": ctx.decision_id, "guard": guard.name}
    try:
        return await step
    except WardgateError as exc:
        log.info("denied by %s: %s", guard.name, exc.detail, extra={**extra, "code": exc.code})
        raise
    except Exception as exc:
        if guard.fail_open:
            log.warning("guard %s failed open: %r", guard.name, exc, extra=extra)
            return current
        log.error("guard %s failed, denying: %r", guard.name, exc, extra=extra)
        raise Denied(f"guard {guard.name} failed: {exc!r}") from exc
