"""OpenTelemetry spans for every call, exported over OTLP without ever blocking a call.

Per call: a ``wardgate.call`` server span (child of the incoming ``traceparent``), with
children ``wardgate.authenticate`` (the edge's check, from arrival to the call's start),
one ``wardgate.guard`` span per guard or policy decision, and ``wardgate.upstream``
(from the request leaving the guards to the upstream's final response). Every span
carries the call's decision id.

Two guards do the work: :class:`CallSpanGuard` goes first in a route's pipeline (so its
end hook runs last) and :class:`UpstreamSpanGuard` last (its request hook runs just
before the upstream call, its reply hook first on the reply). Decisions arrive as
events, by decision id, through :meth:`Tracing.emit`.

Export: :class:`DroppingBatchProcessor` queues finished spans in a bounded deque and
exports them in batches on its own thread; a full queue or a failed export drops the
spans and counts them (``dropped``). Attribute keys matching the redaction patterns are
replaced, and every string value runs through the content secret redactor.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wardgate.config.telemetry import DEFAULT_REDACT_KEYS, TracingConfig
from wardgate.core.context import TraceContext
from wardgate.policy.decision_log import PolicyDecided
from wardgate.telemetry.events import GatewayEvent, GuardDecision, UpstreamResult, session_ref

if TYPE_CHECKING:
    from wardgate.content.redactor import Redactor
    from wardgate.core.call import Call, Outcome
    from wardgate.wire.jsonrpc import Message

__all__ = [
    "CallSpanGuard",
    "DroppingBatchProcessor",
    "Tracing",
    "UpstreamSpanGuard",
    "make_exporter",
]

log = logging.getLogger("wardgate.tracing")

REDACTED = "[REDACTED]"
_STATE = "tracing"
_PROPAGATOR = TraceContextTextMapPropagator()


class DroppingBatchProcessor(SpanProcessor):
    """Batches finished spans to an exporter on a thread; drops (and counts) past a bound.

    ``on_end`` runs on the call path: it only appends to a bounded deque.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = 8192,
        max_batch: int = 512,
        delay_seconds: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._queue: deque[ReadableSpan] = deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._delay = delay_seconds
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopping = False
        self.dropped = 0
        self.exported = 0
        self._thread = threading.Thread(target=self._run, name="wardgate-otlp", daemon=True)
        self._thread.start()

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopping or len(self._queue) >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._delay)
            self._wake.clear()
            while self._queue:
                self._idle.clear()
                batch = [
                    self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))
                ]
                try:
                    result = self._exporter.export(batch)
                except Exception:
                    log.exception("span export failed")
                    result = SpanExportResult.FAILURE
                if result is SpanExportResult.SUCCESS:
                    self.exported += len(batch)
                else:
                    # The collector is down: these spans are lost, never retried here
                    # (the exporter already retried within its timeout).
                    self.dropped += len(batch)
            self._idle.set()
            if self._stopping:
                return

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout_millis / 1000)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(10)
        self._exporter.shutdown()


def make_exporter(config: TracingConfig) -> SpanExporter:
    """The official OTLP exporter for the configured protocol.

    Raises:
        ImportError: the ``otel`` extra is not installed.
    """
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(
            endpoint=config.endpoint,
            headers=tuple(config.headers.items()) or None,
            timeout=int(config.export_timeout_seconds),
            insecure=config.insecure,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=config.endpoint,
        headers=dict(config.headers) or None,
        timeout=config.export_timeout_seconds,
    )


class _Redact:
    def __init__(self, patterns: Sequence[str], redactor: Redactor | None) -> None:
        self._patterns = tuple(p.lower() for p in patterns)
        self._redactor = redactor
        self._keys: dict[str, bool] = {}

    def key_is_secret(self, key: str) -> bool:
        found = self._keys.get(key)
        if found is None:
            low = key.lower()
            # Match the whole key and its last dotted part: ``http.request.header.cookie``.
            last = low.rsplit(".", 1)[-1]
            found = any(fnmatch.fnmatchcase(low, p) or fnmatch.fnmatchcase(last, p)
                        for p in self._patterns)  # fmt: skip
            if len(self._keys) < 4096:
                self._keys[key] = found
        return found

    def attributes(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in attrs.items():
            if value is None:
                continue
            if self.key_is_secret(key):
                out[key] = REDACTED
            elif isinstance(value, str) and self._redactor is not None:
                out[key] = self._redactor.redact_str(value)
            else:
                out[key] = value
        return out


class _CallSpans:
    __slots__ = ("call", "decision_id", "upstream")

    def __init__(self, call: Span, decision_id: str) -> None:
        self.call = call
        self.decision_id = decision_id
        self.upstream: Span | None = None


class Tracing:
    """Spans for calls; ``guards()`` go into every route, the object itself is a sink.

    Raises:
        ImportError: the ``otel`` extra is not installed (at construction).
    """

    def __init__(
        self,
        config: TracingConfig,
        *,
        exporter: SpanExporter | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.processor = DroppingBatchProcessor(
            exporter if exporter is not None else make_exporter(config),
            max_queue=config.max_queue,
            max_batch=config.max_batch,
            delay_seconds=config.schedule_delay_seconds,
        )
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name})
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("wardgate")
        self._redact = _Redact(config.redact_keys or DEFAULT_REDACT_KEYS, redactor)
        self._live: dict[str, _CallSpans] = {}

    @property
    def dropped(self) -> int:
        return self.processor.dropped

    def guards(self) -> tuple[CallSpanGuard, UpstreamSpanGuard]:
        """The first and the last guard of a route's pipeline."""
        return CallSpanGuard(self), UpstreamSpanGuard(self)

    def annotate(self, call: Call, attributes: Mapping[str, Any]) -> None:
        """Add attributes to a call's span (redacted like every other)."""
        spans = call.state.get(_STATE)
        if isinstance(spans, _CallSpans):
            spans.call.set_attributes(self._redact.attributes(attributes))

    def shutdown(self) -> None:
        """Export what is queued (bounded) and stop."""
        self.provider.shutdown()

    # -- spans ------------------------------------------------------------------------

    def _start_call(self, call: Call) -> None:
        ctx = call.ctx
        parent = None
        if ctx.trace is not None:
            carrier = {"traceparent": ctx.trace.traceparent}
            if ctx.trace.tracestate:
                carrier["tracestate"] = ctx.trace.tracestate
            parent = _PROPAGATOR.extract(carrier)
        now = time.time_ns()
        arrived = int(ctx.received_at * 1e9) if ctx.received_at else now
        principal = ctx.principal
        span = self.tracer.start_span(
            "wardgate.call",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=min(arrived, now),
            attributes=self._redact.attributes(
                {
                    "wardgate.decision_id": ctx.decision_id,
                    "wardgate.route": ctx.route,
                    "mcp.method": call.method,
                    "mcp.target": ctx.target,
                    "wardgate.upstream": ctx.upstream,
                    "enduser.id": principal.subject,
                    "wardgate.tenant": principal.tenant,
                    "wardgate.transport": ctx.transport,
                    "mcp.session.id": (
                        session_ref(ctx.session_id) if ctx.session_id is not None else None
                    ),
                    "client.address": ctx.client_addr,
                }
            ),
        )
        inside = trace.set_span_in_context(span)
        auth = self.tracer.start_span(
            "wardgate.authenticate",
            context=inside,
            start_time=min(arrived, now),
            attributes={
                "wardgate.decision_id": ctx.decision_id,
                "wardgate.auth.method": principal.method,
            },
        )
        auth.end(end_time=now)
        spans = _CallSpans(span, ctx.decision_id)
        call.state[_STATE] = spans
        if len(self._live) < 100_000:
            self._live[ctx.decision_id] = spans

    def _start_upstream(self, call: Call) -> None:
        spans = call.state.get(_STATE)
        if not isinstance(spans, _CallSpans) or spans.upstream is not None:
            return
        span = spans.upstream = self.tracer.start_span(
            "wardgate.upstream",
            context=trace.set_span_in_context(spans.call),
            kind=SpanKind.CLIENT,
            attributes=self._redact.attributes(
                {
                    "wardgate.decision_id": call.ctx.decision_id,
                    "wardgate.upstream": call.ctx.upstream,
                }
            ),
        )
        # What the route propagates (``propagate.trace``) is the call's ``trace_out``:
        # point it at the upstream span, so the upstream's spans are children of the
        # gateway's. The client's own context (``ctx.trace``) stays as it arrived.
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        if "traceparent" in carrier:
            call.trace_out = TraceContext(
                carrier["traceparent"], call.ctx.trace.tracestate if call.ctx.trace else None
            )

    def _end_upstream(self, spans: _CallSpans, error: str | None = None) -> None:
        span, spans.upstream = spans.upstream, None
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def _end_call(self, call: Call, outcome: Outcome) -> None:
        spans = call.state.pop(_STATE, None)
        self._live.pop(call.ctx.decision_id, None)
        if not isinstance(spans, _CallSpans):
            return
        failed = outcome.status not in ("ok", "open")
        self._end_upstream(spans, outcome.code if failed else None)
        span = spans.call
        span.set_attributes(
            self._redact.attributes(
                {
                    "wardgate.outcome": outcome.status,
                    "wardgate.code": outcome.code,
                    "wardgate.guard": outcome.guard,
                    "mcp.target": call.ctx.target,
                    "http.response.status_code": outcome.http_status,
                }
            )
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, outcome.code or outcome.status))
        span.end()

    # -- the event sink ---------------------------------------------------------------

    def emit(self, event: GatewayEvent) -> None:
        spans = self._live.get(event.decision_id or "")
        if spans is None:
            return
        if isinstance(event, GuardDecision):
            self._decision(
                spans, event.guard, event.allowed, event.code, {"wardgate.reason": event.reason}
            )
        elif isinstance(event, PolicyDecided):
            self._decision(
                spans,
                f"policy:{event.engine}",
                event.allowed,
                event.error,
                {"wardgate.policy.revision": event.revision,
                 "wardgate.policy.reasons": list(event.reasons)},
                duration_ns=int(event.latency_ms * 1e6),
            )  # fmt: skip
        elif isinstance(event, UpstreamResult):
            up = spans.upstream or spans.call
            up.set_attributes(self._redact.attributes({"wardgate.upstream.detail": event.detail}))
            self._end_upstream(spans, event.code or event.status)

    def _decision(
        self,
        spans: _CallSpans,
        guard: str,
        allowed: bool,
        code: str | None,
        extra: Mapping[str, Any],
        duration_ns: int = 0,
    ) -> None:
        end = time.time_ns()
        span = self.tracer.start_span(
            "wardgate.guard",
            context=trace.set_span_in_context(spans.call),
            start_time=end - duration_ns,
            attributes=self._redact.attributes(
                {
                    "wardgate.decision_id": spans.decision_id,
                    "wardgate.guard.name": guard,
                    "wardgate.guard.allowed": allowed,
                    "wardgate.code": code,
                    **extra,
                }
            ),
        )
        if not allowed:
            span.set_status(Status(StatusCode.ERROR, code or "denied"))
        span.end(end_time=end)


class CallSpanGuard:
    """First guard of a route: opens the call span, and (its end hook running last) ends it."""

    name = "trace"
    methods: frozenset[str] | None = None
    fail_open = True  # tracing must never deny a call

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    async def on_request(self, call: Call, message: Message) -> Message:
        self._tracing._start_call(call)
        return message

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        self._tracing._end_call(call, outcome)


class UpstreamSpanGuard:
    """Last guard of a route: the upstream span runs from here to the final response."""

    name = "trace-upstream"
    methods: frozenset[str] | None = None
    fail_open = True

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    async def on_request(self, call: Call, message: Message) -> Message:
        self._tracing._start_upstream(call)
        return message

    async def on_message(self, call: Call, message: Message) -> Message | None:
        if message.kind == "response":
            spans = call.state.get(_STATE)
            if isinstance(spans, _CallSpans):
                self._tracing._end_upstream(spans)
        return message
