"""A small OTLP/HTTP receiver for the tests (traces and metrics): decodes the protobuf
the SDK sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from support.servers import free_port


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.arrived = asyncio.Event()
        self.port = free_port()
        #: Each metrics export, decoded.
        self.metric_exports: list[ExportMetricsServiceRequest] = []
        self.metrics_arrived = asyncio.Event()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/metrics"

    async def handle_metrics(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        self.metric_exports.append(ExportMetricsServiceRequest.FromString(await request.read()))
        self.metrics_arrived.set()
        return web.Response(
            body=ExportMetricsServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        req = ExportTraceServiceRequest.FromString(await request.read())
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        self.arrived.set()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        field = value.WhichOneof("value")
        out[kv.key] = getattr(value, field) if field else None
    return out


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    app.router.add_post("/v1/metrics", receiver.handle_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()
