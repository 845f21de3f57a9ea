"""OTLP metrics: the series of ``/metrics`` pushed with the official SDK exporter to a
receiver of the test's own (the protobuf decoded), and a collector that hangs or refuses
never holds a call up; what it did not take is counted as dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from conftest import stdio_demo_upstream
from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway
from telemetry.otlp_receiver import attrs, otlp_receiver
from telemetry.test_metrics import _get, _samples


def _config(endpoint: str, metrics_port: int | None = None, **extra: Any) -> dict[str, Any]:
    telemetry: dict[str, Any] = {
        "otlp_metrics": {"endpoint": endpoint, "interval_seconds": 0.05, **extra}
    }
    if metrics_port is not None:
        telemetry["metrics_port"] = metrics_port
    return {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_everything"]}}},
        "telemetry": telemetry,
    }


async def _call(url: str, tool: str, rid: int) -> Any:
    body = modern_body("tools/call", {"name": tool, "arguments": {"text": "hi"}}, rid)
    return await post(f"{url}/mcp/demo", body, modern_headers("tools/call", tool))


def _metrics(export: Any) -> dict[str, Any]:
    return {
        m.name: m for rm in export.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


async def test_the_metrics_arrive_over_otlp_with_names_values_and_attributes() -> None:
    async with otlp_receiver() as rx, run_gateway(_config(rx.metrics_url)) as (url, _):
        await post(
            f"{url}/mcp/demo", modern_body("tools/list", {}, 1), modern_headers("tools/list")
        )
        assert "result" in (await _call(url, "echo", 2))[2]
        assert "error" in (await _call(url, "delete_everything", 3))[2]

        async def settled() -> Any:
            # Exports are periodic and cumulative: wait (bounded) for one with both calls.
            while True:
                rx.metrics_arrived.clear()
                for export in reversed(rx.metric_exports):
                    calls = _metrics(export).get("wardgate_calls")
                    if calls is not None and sum(p.as_double for p in calls.sum.data_points) >= 3:
                        return export
                await rx.metrics_arrived.wait()

        export = await asyncio.wait_for(settled(), 10)
    (resource,) = export.resource_metrics
    service = {kv.key: kv.value.string_value for kv in resource.resource.attributes}
    assert service["service.name"] == "wardgate"
    metrics = _metrics(export)
    calls = metrics["wardgate_calls"]
    assert calls.sum.is_monotonic and calls.sum.aggregation_temporality == 2  # cumulative
    by_attrs = {
        (a["route"], a["method"], a["status"]): p.as_double
        for p in calls.sum.data_points
        if (a := attrs(p))
    }
    assert by_attrs[("demo", "tools/call", "ok")] == 1
    assert by_attrs[("demo", "tools/call", "denied")] == 1
    denials = {
        (a["guard"], a["code"]): p.as_double
        for p in metrics["wardgate_denials"].sum.data_points
        if (a := attrs(p))
    }
    assert denials == {("tool_access", "wardgate.denied"): 1.0}
    latency = metrics["wardgate_call_duration_seconds"].histogram
    (echo,) = [p for p in latency.data_points if attrs(p).get("tool") == "echo"]
    assert echo.count == 1 and sum(echo.bucket_counts) == 1
    assert len(echo.bucket_counts) == len(echo.explicit_bounds) + 1
    assert list(echo.explicit_bounds)[:2] == [0.001, 0.0025]
    assert "wardgate_telemetry_dropped" in metrics


class _HeldCollector:
    """An OTLP/HTTP endpoint that holds every request until released, then refuses it
    (400: not retried), as a collector that hangs and then fails would."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.holding.set()
        await self.release.wait()
        return web.Response(status=400, body=b"")


@pytest.fixture
async def held() -> AsyncIterator[tuple[str, _HeldCollector]]:
    collector = _HeldCollector()
    app = web.Application()
    app.router.add_post("/v1/metrics", collector.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1/metrics", collector
    finally:
        collector.release.set()
        await runner.cleanup()


async def test_a_hanging_collector_never_holds_a_call_and_its_loss_is_counted(
    held: tuple[str, _HeldCollector],
) -> None:
    endpoint, collector = held
    port = free_port()
    config = _config(endpoint, port, export_timeout_seconds=30)
    async with run_gateway(config) as (url, gw):
        otlp = gw.telemetry.otlp_metrics
        assert otlp is not None
        await asyncio.wait_for(collector.holding.wait(), 10)  # an export is in flight, held
        for i in range(20):
            status, _, answer = await _call(url, "echo", 10 + i)
            assert status == 200 and "result" in answer
        # Every call went through while the export still hangs: none waited on it.
        assert otlp.exported == 0 and otlp.dropped == 0 and not collector.release.is_set()
        collector.release.set()  # the collector answers 400: that export is lost

        async def counted() -> None:
            while otlp.dropped == 0:
                await asyncio.sleep(0.02)  # polling a counter, bounded by wait_for

        await asyncio.wait_for(counted(), 10)
        status, body = await _get(f"http://127.0.0.1:{port}/metrics")
    dropped = [v for n, lb, v in _samples(body.decode()) if n == "wardgate_telemetry_dropped_total"
               and lb["sink"] == "otlp_metrics"]  # fmt: skip
    assert dropped and dropped[0] > 0
    assert otlp.exported == 0


async def test_a_collector_that_is_down_costs_the_calls_nothing() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/metrics"
    async with run_gateway(_config(dead, export_timeout_seconds=1)) as (url, gw):
        for i in range(10):
            status, _, answer = await _call(url, "echo", 10 + i)
            assert status == 200 and "result" in answer
        otlp = gw.telemetry.otlp_metrics
        assert otlp is not None
    # The final export at shutdown failed too: everything it carried is counted.
    assert otlp.exported == 0 and otlp.dropped > 0


async def test_metrics_export_over_otlp_grpc_too() -> None:
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import (
        metrics_service_pb2,
        metrics_service_pb2_grpc,
    )

    received: list[Any] = []
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Service(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
        async def Export(self, request: Any, context: Any) -> Any:
            received.append(request)
            loop.call_soon(arrived.set)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.aio.server()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = _config(f"http://127.0.0.1:{port}", protocol="grpc", insecure=True)
        async with run_gateway(config) as (url, _):
            await _call(url, "echo", 1)
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await server.stop(None)
    # The last export (at shutdown) carries the call.
    calls = _metrics(received[-1])["wardgate_calls"]
    assert [(attrs(p)["status"], p.as_double) for p in calls.sum.data_points] == [("ok", 1.0)]
