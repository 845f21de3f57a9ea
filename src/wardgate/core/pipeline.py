"""The guard pipeline: a call's request phase first to last, its reply last to first.

A guard is a small object that takes part in one or more phases of a call, each an
async method, and a ``methods`` set naming the MCP methods whose calls it applies to
(``None``: every call)::

    on_request(call, message) -> message      request phase, guards in order; may deny
    on_message(call, message) -> message|None reply phase, in reverse, per message
    on_end(call, outcome)                     once per call, whatever happened

In the reply phase a response or notification is matched on the call's method; a
server-to-client request (sampling, elicitation, roots) and anything on a standalone
stream are matched on their own method. ``response_methods`` may narrow the reply phase.
A guard that takes part in no phase is refused at construction.

An exception that is not a :class:`~wardgate.errors.WardgateError` denies the call
(fail closed) unless the guard sets ``fail_open``; that choice is logged every time it
is used. End hooks cannot deny: their failures are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar, cast

from wardgate.core.call import LISTEN, Call, Outcome
from wardgate.core.context import CallContext, new_decision_id
from wardgate.errors import Denied, WardgateError
from wardgate.telemetry.events import EventBus, GuardDecision
from wardgate.wire.jsonrpc import Message

__all__ = [
    "CallContext",
    "EndGuard",
    "Guard",
    "Pipeline",
    "ReplyGuard",
    "RequestGuard",
    "new_decision_id",
]

log = logging.getLogger("wardgate.pipeline")

_T = TypeVar("_T")

#: How many method names each per-method cache remembers.
_CACHED = 128


class Guard(Protocol):
    name: str
    methods: frozenset[str] | None
    fail_open: bool


class RequestGuard(Guard, Protocol):
    async def on_request(self, call: Call, message: Message) -> Message:
        """Return the message to forward (maybe rewritten).

        Raises:
            WardgateError: the call must not reach the upstream.
        """
        ...


class ReplyGuard(Guard, Protocol):
    async def on_message(self, call: Call, message: Message) -> Message | None:
        """Return the message to deliver (maybe rewritten), or ``None`` to drop it.

        Raises:
            WardgateError: the message must not reach the client.
        """
        ...


class EndGuard(Guard, Protocol):
    async def on_end(self, call: Call, outcome: Outcome) -> None:
        """Settle what the call reserved; runs exactly once per call."""
        ...


def _applies(methods: frozenset[str] | None, method: str | None) -> bool:
    return methods is None or (method is not None and method in methods)


def _reply_methods(guard: Guard) -> frozenset[str] | None:
    methods: frozenset[str] | None = getattr(guard, "response_methods", guard.methods)
    return methods


class Pipeline:
    """An ordered list of guards, split into its phases once at construction.

    Raises:
        TypeError: a guard takes part in no phase (it would silently never run).
    """

    def __init__(
        self,
        guards: Sequence[Guard] = (),
        *,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        for guard in guards:
            if not any(hasattr(guard, p) for p in ("on_request", "on_message", "on_end")):
                raise TypeError(
                    f"guard {getattr(guard, 'name', guard)!r} takes part in no phase "
                    "(on_request, on_message, on_end)"
                )
        self.guards = tuple(guards)
        self.events = events if events is not None else EventBus()
        self.clock = clock
        self._request = cast(
            "tuple[RequestGuard, ...]", tuple(g for g in guards if hasattr(g, "on_request"))
        )
        self._reply = cast(
            "tuple[ReplyGuard, ...]", tuple(g for g in reversed(guards) if hasattr(g, "on_message"))
        )
        self._end = cast(
            "tuple[EndGuard, ...]", tuple(g for g in reversed(guards) if hasattr(g, "on_end"))
        )
        self._request_for: dict[str | None, tuple[RequestGuard, ...]] = {}
        self._reply_for: dict[str | None, tuple[ReplyGuard, ...]] = {}
        self._end_for: dict[str | None, tuple[EndGuard, ...]] = {}

    # -- which guards take part in what -------------------------------------------------

    # Method names come from clients: each cache holds at most _CACHED of them, and a
    # method beyond that is matched afresh each time rather than remembered.

    def _requests(self, method: str | None) -> tuple[RequestGuard, ...]:
        found = self._request_for.get(method)
        if found is None:
            found = tuple(g for g in self._request if _applies(g.methods, method))
            if len(self._request_for) < _CACHED:
                self._request_for[method] = found
        return found

    def _replies(self, method: str | None) -> tuple[ReplyGuard, ...]:
        found = self._reply_for.get(method)
        if found is None:
            found = tuple(g for g in self._reply if _applies(_reply_methods(g), method))
            if len(self._reply_for) < _CACHED:
                self._reply_for[method] = found
        return found

    def _ends(self, method: str | None) -> tuple[EndGuard, ...]:
        found = self._end_for.get(method)
        if found is None:
            found = tuple(g for g in self._end if _applies(g.methods, method))
            if len(self._end_for) < _CACHED:
                self._end_for[method] = found
        return found

    def watches_replies(self, method: str | None) -> bool:
        """Whether any guard takes part in the reply phase of calls to ``method``."""
        return bool(self._replies(method))

    # -- the phases ------------------------------------------------------------------------

    def call(self, ctx: CallContext, message: Message, *, request_bytes: int = 0) -> Call:
        """A new call for ``message``; whoever makes it must :meth:`Call.end` it."""
        return Call(ctx, message, self, self.clock, request_bytes)

    async def admit(self, call: Call) -> None:
        """Run the request phase; ``call.request`` becomes the message to forward.

        Raises:
            WardgateError: a guard denied the call, or failed (closed); the denial is
                recorded on the call, which the caller still ends.
        """
        message = call.request
        for guard in self._requests(message.method):
            try:
                step = guard.on_request(call, message)
                message = await _run(call, guard, step, message, message.method)
            except WardgateError as exc:
                call.failed(exc, guard=guard.name)
                raise
        call.request = message

    async def run_reply(self, call: Call, message: Message) -> Message | None:
        """The reply phase for one message (see the module docstring for matching).

        Raises:
            WardgateError: a guard denied the message, or failed (closed).
        """
        call_method = call.request.method
        if message.kind == "request" or call_method == LISTEN:
            guards = self._replies(message.method)
        else:
            guards = self._replies(call_method)
        current: Message | None = message
        for guard in guards:
            if current is None:
                return None
            step = guard.on_message(call, current)
            current = await _run(call, guard, step, current, current.method or call.method)
        return current

    async def run_end(self, call: Call, outcome: Outcome) -> None:
        for guard in self._ends(call.request.method):
            try:
                await guard.on_end(call, outcome)
            except Exception:
                log.exception(
                    "end hook of guard %s failed",
                    guard.name,
                    extra={"decision_id": call.ctx.decision_id},
                )


async def _run(
    call: Call, guard: Guard, step: Awaitable[_T], current: _T, method: str | None
) -> _T:
    """One guard step: denials pass through, any other failure denies unless fail-open.

    ``method`` is the method of the message in hand (the decision event names it).
    """
    ctx = call.ctx
    try:
        return await step
    except WardgateError as exc:
        _decided(call, guard, exc, method)
        raise
    except Exception as exc:
        if guard.fail_open:
            log.warning(
                "guard %s failed open: %r",
                guard.name,
                exc,
                extra={"decision_id": ctx.decision_id, "guard": guard.name},
            )
            return current
        denial = Denied(f"guard {guard.name} failed: {exc!r}")
        log.error(
            "guard %s failed, denying: %r",
            guard.name,
            exc,
            extra={"decision_id": ctx.decision_id, "guard": guard.name},
        )
        _decided(call, guard, denial, method)
        raise denial from exc


def _decided(call: Call, guard: Guard, exc: WardgateError, method: str | None) -> None:
    ctx = call.ctx
    call.pipeline.events.emit(
        GuardDecision(
            ctx.decision_id,
            ctx.route,
            guard.name,
            method,
            ctx.target,
            ctx.principal.subject,
            False,
            exc.code,
            exc.detail,
        )
    )
