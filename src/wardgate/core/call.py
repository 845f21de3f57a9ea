"""The call: the unit every guard works on, from the request to its end.

A :class:`Call` is made by :meth:`Pipeline.call <wardgate.core.pipeline.Pipeline.call>`
and admitted by the request guards (:meth:`Pipeline.admit`). Every message of the reply passes
:meth:`Call.message` (response guards in reverse order, then the obligations the request
phase left), and :meth:`Call.end` runs the guards' end hooks exactly once, whatever
happened, with the :class:`Outcome`. The edge owns the call's lifetime: it ends the
call in a ``finally`` so a result, an error, an upstream failure, a timeout, a
cancellation and a client that went away all end it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from wardgate.core.context import CallContext, TraceContext
from wardgate.core.obligations import Obligations
from wardgate.errors import Denied, UpstreamError, UpstreamTimeout, WardgateError
from wardgate.telemetry.events import CallEnded, UpstreamResult, session_ref
from wardgate.wire.jsonrpc import Message

if TYPE_CHECKING:
    from wardgate.core.pipeline import Pipeline

__all__ = ["LISTEN", "LISTEN_MESSAGE", "Call", "Outcome", "Status"]

log = logging.getLogger("wardgate.call")

#: The method a standalone server-to-client stream (HTTP GET, legacy SSE) is known by:
#: opening one is a call like any other, and passes the request guards.
LISTEN = "wardgate/listen"
LISTEN_MESSAGE = Message({"jsonrpc": "2.0", "method": LISTEN}, "notification")

Status = Literal[
    "ok", "error", "denied", "upstream_error", "timeout", "cancelled", "client_gone", "open"
]


@dataclass(slots=True)
class Outcome:
    """How a call ended. ``code`` is a Wardgate error code, or ``jsonrpc:N``.

    Read-only by convention (not frozen: it is built for every call, and a frozen
    dataclass costs several times as much to build).
    """

    status: Status
    code: str | None
    latency_s: float
    request_bytes: int
    response_bytes: int
    messages: int
    http_status: int | None = None
    guard: str | None = None


@dataclass(slots=True)
class Call:
    """One client call in flight; see the module docstring.

    ``state`` is scratch space for guards, keyed by guard name (a limiter records what
    it reserved, a tracer its span). ``obligations`` are what the request phase bound
    the reply phase to. ``trace_out`` is the trace context to hand the upstream (set by
    the tracing guard to the gateway's upstream span); ``None`` passes on what the client
    sent (``ctx.trace``), which stays as it arrived.
    """

    ctx: CallContext
    request: Message
    pipeline: Pipeline
    clock: Callable[[], float] = time.perf_counter
    request_bytes: int = 0
    response_bytes: int = 0
    messages: int = 0
    obligations: Obligations = field(default_factory=Obligations)
    state: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    trace_out: TraceContext | None = None
    _status: Status = "open"
    _code: str | None = None
    _guard: str | None = None
    _failure: WardgateError | None = None
    _outcome: Outcome | None = None

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    @property
    def method(self) -> str | None:
        return self.request.method

    @property
    def ended(self) -> bool:
        return self._outcome is not None

    # -- the reply phase ----------------------------------------------------------

    async def message(self, message: Message) -> Message | None:
        """Pass one message of the reply through the response guards and obligations.

        Returns the message to deliver, or ``None`` to drop it (a server-to-client
        request that is dropped must be answered upstream by the caller).

        Raises:
            WardgateError: a guard denied the message.
        """
        self.messages += 1
        if message.kind == "response":
            self._saw_final(message)
        out: Message | None = await self.pipeline.run_reply(self, message)
        if out is not None and out.kind == "response" and self.obligations:
            out = self.obligations.apply(out, self.ctx.decision_id)
        return out

    def _saw_final(self, message: Message) -> None:
        error = message.raw.get("error")
        if error is None:
            self._status, self._code = "ok", None
            return
        self._status = "error"
        data = error.get("data") if isinstance(error, dict) else None
        ours = data.get("code") if isinstance(data, dict) else None
        if isinstance(ours, str) and ours.startswith("wardgate."):
            self._code = ours
        else:
            self._code = f"jsonrpc:{error.get('code') if isinstance(error, dict) else '?'}"

    # -- outcomes the edge and the route report -------------------------------------

    def failed(self, exc: WardgateError, *, guard: str | None = None) -> None:
        """Record why the call failed (a denial, an upstream failure, a bad request).

        Reporting the same exception again (as it travels up) changes nothing.
        """
        if exc is self._failure:
            return
        self._failure = exc
        if isinstance(exc, Denied):
            self._status = "denied"
        elif isinstance(exc, UpstreamTimeout):
            self._status = "timeout"
        elif isinstance(exc, UpstreamError):
            self._status = "upstream_error"
        else:
            self._status = "error"
        self._code, self._guard = exc.code, guard
        if isinstance(exc, UpstreamError):
            self.pipeline.events.emit(
                UpstreamResult(
                    self.ctx.decision_id,
                    self.ctx.route,
                    self.ctx.upstream,
                    self.method,
                    self._status,
                    exc.code,
                    exc.detail,
                )
            )

    def cancelled(self, *, client_gone: bool) -> None:
        if self._status == "open":
            self._status = "client_gone" if client_gone else "cancelled"

    # -- the end -----------------------------------------------------------------------

    async def end(self, http_status: int | None = None) -> Outcome:
        """End the call: run every end hook once, emit ``call.ended``. Idempotent."""
        if self._outcome is not None:
            return self._outcome
        status: Status = self._status
        if status == "open":
            # No final response was seen and nothing failed: the reply was accepted
            # (202) or the stream was cut by the gateway before it ended.
            status = "ok" if http_status is not None and http_status < 400 else "cancelled"
        outcome = Outcome(
            status,
            self._code,
            self.clock() - self.started,
            self.request_bytes,
            self.response_bytes,
            self.messages,
            http_status,
            self._guard,
        )
        self._outcome = outcome
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The task is being cancelled (client gone, shutdown): the end hooks must
            # still run to completion, so they get a task of their own.
            await asyncio.shield(self.pipeline.run_end(self, outcome))
        else:
            await self.pipeline.run_end(self, outcome)
        ctx = self.ctx
        self.pipeline.events.emit(
            CallEnded(
                ctx.decision_id,
                ctx.route,
                self.method,
                ctx.target,
                ctx.upstream,
                ctx.principal.subject,
                ctx.principal.tenant,
                ctx.transport,
                ctx.era,
                session_ref(ctx.session_id) if ctx.session_id is not None else None,
                outcome.status,
                outcome.code,
                http_status,
                round(outcome.latency_s * 1000, 3),
                outcome.request_bytes,
                outcome.response_bytes,
                outcome.messages,
            )
        )
        return outcome
