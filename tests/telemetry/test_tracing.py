"""Traces: the SDK exports over OTLP/HTTP to a receiver of the test's own; the spans follow
the incoming traceparent, carry the decision id, and secrets never leave redacted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import stdio_demo_upstream
from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway
from telemetry.otlp_receiver import attrs, otlp_receiver
from wardgate.config.telemetry import TracingConfig
from wardgate.content.redactor import Redactor
from wardgate.core.context import CallContext, TraceContext
from wardgate.core.pipeline import Pipeline
from wardgate.telemetry.events import EventBus
from wardgate.telemetry.tracing import Tracing
from wardgate.wire.jsonrpc import Message

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _config(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_everything"]}}},
        "telemetry": {"tracing": {"endpoint": endpoint, "schedule_delay_seconds": 0.05, **extra}},
    }


async def _call(url: str, tool: str, headers: dict[str, str], rid: int) -> Any:
    body = modern_body("tools/call", {"name": tool, "arguments": {"text": "hi"}}, rid)
    return await post(f"{url}/mcp/demo", body, {**modern_headers("tools/call", tool), **headers})


async def test_spans_follow_the_traceparent_with_decision_ids_and_parent_links() -> None:
    async with otlp_receiver() as rx, run_gateway(_config(rx.url)) as (url, _):
        tp = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        status, _, ok = await _call(url, "echo", tp, 1)
        assert status == 200 and "result" in ok
        status, _, denied = await _call(url, "delete_everything", tp, 2)
        assert denied["error"]["code"] == -32003
        denied_id = denied["error"]["data"]["decisionId"]
        # aclose() flushed the exporter.
    calls = rx.named("wardgate.call")
    assert len(calls) == 2
    for span in calls:
        assert span.trace_id.hex() == TRACE_ID
        assert span.parent_span_id.hex() == PARENT_ID
    by_id = {attrs(s)["wardgate.decision_id"]: s for s in calls}
    denied_span = by_id[denied_id]
    assert attrs(denied_span)["wardgate.outcome"] == "denied"
    assert attrs(denied_span)["wardgate.code"] == "wardgate.denied"
    ok_span = next(s for d, s in by_id.items() if d != denied_id)
    assert attrs(ok_span)["wardgate.outcome"] == "ok"
    children = {s.name: s for s in rx.spans if s.parent_span_id == denied_span.span_id}
    assert {"wardgate.authenticate", "wardgate.guard"} <= set(children)
    guard = attrs(children["wardgate.guard"])
    assert guard["wardgate.guard.name"] == "tool_access"
    assert guard["wardgate.decision_id"] == denied_id
    # The allowed call reached the upstream: its upstream span is a child of its call span.
    ups = [s for s in rx.named("wardgate.upstream") if s.parent_span_id == ok_span.span_id]
    assert len(ups) == 1 and ups[0].trace_id == ok_span.trace_id
    assert not [s for s in rx.named("wardgate.upstream") if s.parent_span_id == denied_span.span_id]


async def test_without_a_traceparent_a_new_trace_starts() -> None:
    async with otlp_receiver() as rx, run_gateway(_config(rx.url)) as (url, _):
        await _call(url, "echo", {"traceparent": "00-zz-bad-01"}, 1)
    (span,) = rx.named("wardgate.call")
    assert span.trace_id.hex() != TRACE_ID and span.parent_span_id == b""


async def test_secret_keys_and_values_are_redacted_before_export() -> None:
    async with otlp_receiver() as rx:
        tracing = Tracing(
            TracingConfig(endpoint=rx.url, schedule_delay_seconds=0.05), redactor=Redactor()
        )
        first, last = tracing.guards()
        pipeline = Pipeline([first, last], events=EventBus([tracing]))
        ctx = CallContext(
            "r",
            trace=TraceContext(f"00-{TRACE_ID}-{PARENT_ID}-01"),
            target="ghp_" + "a" * 36,  # a GitHub token as a tool name: a value to redact
        )
        call = pipeline.call(
            ctx, Message({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}, "request")
        )
        await pipeline.admit(call)
        tracing.annotate(
            call,
            {
                "http.request.header.authorization": "Bearer abc",
                "x.api_key": "k",
                "session_cookie": "c",
                "Cookie": "c2",
                "plain": "harmless",
            },
        )
        await call.end(200)
        # Shutdown flushes from its own thread: the receiver runs on this loop.
        await asyncio.to_thread(tracing.shutdown)
    (span,) = rx.named("wardgate.call")
    a = attrs(span)
    assert a["http.request.header.authorization"] == "[REDACTED]"
    assert a["x.api_key"] == "[REDACTED]"
    assert a["Cookie"] == "[REDACTED]"
    assert a["session_cookie"] == "c"  # "cookie" is an exact pattern, "*cookie*" is not
    assert a["plain"] == "harmless"
    assert "ghp_" not in a["mcp.target"] and "REDACTED" in a["mcp.target"]


async def test_a_collector_that_is_down_drops_and_counts_without_slowing_calls() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    tracing = Tracing(
        TracingConfig(
            endpoint=dead, schedule_delay_seconds=0.01, max_queue=16, max_batch=4,
            export_timeout_seconds=1,
        )
    )  # fmt: skip
    first, last = tracing.guards()
    pipeline = Pipeline([first, last])
    began = time.perf_counter()
    for i in range(200):
        call = pipeline.call(
            CallContext("r"), Message({"jsonrpc": "2.0", "id": i, "method": "ping"}, "request")
        )
        await pipeline.admit(call)
        await call.end(200)
    elapsed = time.perf_counter() - began
    # 200 calls with 3 spans each never waited for the dead exporter (1 s timeout).
    assert elapsed < 0.5
    tracing.shutdown()
    assert tracing.dropped > 0
    assert tracing.dropped + tracing.processor.exported == 600
    assert tracing.processor.exported == 0


async def test_spans_export_over_otlp_grpc_too() -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Service(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        async def Export(self, request: Any, context: Any) -> Any:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    received.extend(ss.spans)
            loop.call_soon(arrived.set)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = _config(f"http://127.0.0.1:{port}", protocol="grpc", insecure=True)
        async with run_gateway(config) as (url, _):
            await _call(url, "echo", {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, 1)
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await server.stop(None)
    (span,) = [s for s in received if s.name == "wardgate.call"]
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID


async def test_the_upstream_is_handed_the_upstream_span_as_its_parent() -> None:
    from wardgate.routing.propagation import Propagation

    async with otlp_receiver() as rx:
        tracing = Tracing(TracingConfig(endpoint=rx.url, schedule_delay_seconds=0.05))
        first, last = tracing.guards()
        pipeline = Pipeline([first, last])
        ctx = CallContext("r", trace=TraceContext(f"00-{TRACE_ID}-{PARENT_ID}-01", "k=v"))
        raw = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}
        call = pipeline.call(ctx, Message(raw, "request"))
        await pipeline.admit(call)
        headers: dict[str, str] = {}
        Propagation(trace=True).apply(call, call.request.raw, headers)
        meta = Propagation(trace=True, via_meta=True).apply(call, call.request.raw, {})
        # What the client sent stays what the guards see; the upstream gets trace_out.
        assert call.ctx.trace == TraceContext(f"00-{TRACE_ID}-{PARENT_ID}-01", "k=v")
        await call.end(200)
        await asyncio.to_thread(tracing.shutdown)
    (upstream,) = rx.named("wardgate.upstream")
    sent = f"00-{TRACE_ID}-{upstream.span_id.hex()}-01"
    assert headers == {"traceparent": sent, "tracestate": "k=v"}
    assert meta["params"]["_meta"]["traceparent"] == sent
