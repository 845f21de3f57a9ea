"""What telemetry costs, measured in one process.

* per-call overhead of tracing + metrics: the same calls through a route's guard
  pipeline (admit, one reply message, end, the call.ended event) with telemetry off and
  on; the spans and the metrics are exported over OTLP/HTTP by the official SDK
  exporters to a receiver on loopback (a thread of this process that answers 200), so
  the export threads compete for the CPU as they would in the gateway. Target (issue
  11): at most 0.1 ms p50 added.
* audit sink throughput: call.ended events emitted as fast as one thread can, and the
  time until the writer thread has chained, written and sealed them all.
* detector check cost: one ``Ueba.observe`` with every detector on, memory state,
  beside the same with the memory store as it was (documents deep-copied) and places
  rebuilt per lookup, interleaved in the same run; then with the shipped GeoIP database.
  Target: at most 20 µs.

Run: ``.venv/bin/python bench/telemetry.py [--calls N]``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.resources import Resource

from wardgate.config.telemetry import OtlpMetricsConfig, TracingConfig, UebaConfig
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.identity.principal import Principal
from wardgate.state import MemoryStateStore
from wardgate.telemetry.audit import AuditSink
from wardgate.telemetry.events import CallEnded, EventBus
from wardgate.telemetry.metrics import Metrics, ToolListGuard
from wardgate.telemetry.otlp_metrics import OtlpMetrics, metrics_data
from wardgate.telemetry.tracing import Tracing
from wardgate.telemetry.ueba import GeoIp2Fast, Observation, Place, StaticGeo, Ueba
from wardgate.telemetry.ueba.geo import place_of
from wardgate.wire.jsonrpc import Message


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _Allow:
    name = "allow"
    methods = None
    fail_open = False

    async def on_request(self, call: Any, message: Message) -> Message:
        return message


REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}
RESPONSE = Message({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}, "response")
PRINCIPAL = Principal(subject="alice", method="jwt", tenant="acme")


async def _per_call(pipeline: Pipeline, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        ctx = CallContext("r", principal=PRINCIPAL, target="echo", upstream="u")
        call = pipeline.call(ctx, Message(REQUEST, "request"))
        await pipeline.admit(call)
        await call.message(RESPONSE)
        await call.end(200)
        out.append((time.perf_counter_ns() - t0) / 1000)
        if i % 256 == 0:
            await asyncio.sleep(0)  # let the loop breathe as a server's would
    return out


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def bench_tracing(n: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    off = Pipeline([_Allow()], events=EventBus())
    tracing = Tracing(TracingConfig(endpoint=endpoint))
    metrics = Metrics(["r"])
    metrics.learn_tools(["echo"])
    first, last = tracing.guards()
    on = Pipeline(
        [first, _Allow(), ToolListGuard(metrics), last], events=EventBus([metrics, tracing])
    )
    # The metrics also pushed over OTLP/HTTP, every 0.25 s (60 times a deployment's
    # default 15 s): a pusher runs only during the "+otlp metrics" rounds.
    otlp_config = OtlpMetricsConfig(
        endpoint=endpoint.replace("traces", "metrics"), interval_seconds=0.25
    )
    await _per_call(off, 2000)
    await _per_call(on, 2000)
    rounds: dict[str, list[float]] = {"off": [], "on": [], "otlp": []}
    exports = dropped = 0
    for _ in range(5):  # interleaved, so drift hits all alike
        rounds["off"] += await _per_call(off, n // 5)
        rounds["on"] += await _per_call(on, n // 5)
        otlp = OtlpMetrics(otlp_config, metrics.registry)
        otlp.start()
        rounds["otlp"] += await _per_call(on, n // 5)
        await asyncio.to_thread(otlp.shutdown)
        exports, dropped = exports + otlp.exported, dropped + otlp.dropped
    await asyncio.to_thread(tracing.shutdown)
    server.shutdown()
    p50 = {k: _p(v, 50) for k, v in rounds.items()}
    p99 = {k: _p(v, 99) for k, v in rounds.items()}
    print(f"per call, telemetry off: p50 {p50['off']:.1f} µs  p99 {p99['off']:.1f} µs")
    print(f"per call, tracing (OTLP/HTTP) + metrics: p50 {p50['on']:.1f} µs  "
          f"p99 {p99['on']:.1f} µs; added p50 {p50['on'] - p50['off']:.1f} µs")  # fmt: skip
    print(f"per call, + metrics over OTLP/HTTP: p50 {p50['otlp']:.1f} µs  "
          f"p99 {p99['otlp']:.1f} µs; added p50 {p50['otlp'] - p50['off']:.1f} µs "
          f"(target <= 100 µs); vs without {p50['otlp'] / p50['on']:.2f}x")  # fmt: skip
    print(f"  spans exported {tracing.processor.exported}, dropped {tracing.dropped}; "
          f"metric exports {exports}, points dropped {dropped}")  # fmt: skip
    # What one push costs its thread, for a busier registry: 5 routes x 50 tools.
    busy = Metrics([f"r{i}" for i in range(5)])
    busy.learn_tools([f"tool{i}" for i in range(50)])
    for r in range(5):
        for t in range(50):
            busy.emit(
                CallEnded(
                    "d", f"r{r}", "tools/call", f"tool{t}", "u", "alice", "acme", "http",
                    "modern", None, "ok", None, 200, 1.0, 1, 1, 1,
                )
            )  # fmt: skip
    _, points = metrics_data(busy.registry.collect(), Resource.create({}), 0, 1)
    t0 = time.perf_counter()
    for _ in range(20):
        encode_metrics(metrics_data(busy.registry.collect(), Resource.create({}), 0, 1)[0])
    each = (time.perf_counter() - t0) / 20 * 1000
    print(f"  one metrics push, collection + encoding: {each:.2f} ms for {points} points "
          f"(once per interval, on the pusher's thread)")  # fmt: skip


def bench_audit(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = AuditSink(Path(tmp) / "audit.jsonl", Ed25519PrivateKey.generate(), queue_size=n + 1)
        sink.start()
        event = CallEnded(
            "0123456789abcdef", "r", "tools/call", "echo", "u", "alice", "acme", "http",
            "modern", None, "ok", None, 200, 1.234, 120, 340, 1,
        )  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(n):
            sink.emit(event)
        t_emit = time.perf_counter() - t0
        sink.close(timeout=120)
        t_all = time.perf_counter() - t0
        rate = n / t_all
        emit_us = t_emit / n * 1e6
        print(f"audit: {n} events, emit {emit_us:.2f} µs each on the call path; "
              f"written, chained and sealed at {rate:,.0f}/s; dropped {sink.dropped}")  # fmt: skip


class _DeepCopyStore(MemoryStateStore):
    """The memory store as it was before: every document deep-copied in and out."""

    async def doc_get(self, key: str) -> dict[str, Any] | None:
        doc = await super().doc_get(key)
        return copy.deepcopy(doc)

    async def doc_put(self, key: str, doc: dict[str, Any], ttl_seconds: float | None) -> None:
        await super().doc_put(key, copy.deepcopy(doc), ttl_seconds)


class _UncachedGeo(StaticGeo):
    """Geo lookups as before: a new place built on every lookup."""

    def __init__(self, table: dict[str, tuple[str, str | None]]) -> None:
        super().__init__(table)
        self._raw = table

    def lookup(self, address: str) -> Place | None:
        entry = self._raw.get(address)
        return place_of.__wrapped__(*entry) if entry is not None else None


async def _observe_times(ueba: Ueba, n: int, addrs: list[str]) -> list[float]:
    tools = [f"tool{i}" for i in range(4)]
    times = []
    for i in range(n):
        obs = Observation(1000.0 + i * 0.5, f"user{i % 50}", "acme", addrs[i % len(addrs)],
                          f"tok{i % 50}", tools[i % 4])  # fmt: skip
        t0 = time.perf_counter_ns()
        await ueba.observe(obs)
        times.append((time.perf_counter_ns() - t0) / 1000)
    return times


async def bench_ueba(n: int) -> None:
    table: dict[str, tuple[str, str | None]] = {
        "198.51.100.1": ("US", "AS1"),
        "203.0.113.1": ("DE", "AS2"),
    }
    addrs = ["198.51.100.1"]
    now = Ueba(UebaConfig(geoip="none"), MemoryStateStore(), StaticGeo(table))
    before = Ueba(UebaConfig(geoip="none"), _DeepCopyStore(), _UncachedGeo(table))
    await _observe_times(now, 2000, addrs)
    await _observe_times(before, 2000, addrs)
    rounds: dict[str, list[float]] = {"now": [], "before": []}
    for _ in range(5):  # interleaved, so drift hits both alike
        rounds["now"] += await _observe_times(now, n // 5, addrs)
        rounds["before"] += await _observe_times(before, n // 5, addrs)
    p_now, p_before = _p(rounds["now"], 50), _p(rounds["before"], 50)
    print(f"detector check (all five, memory store): p50 {p_now:.1f} µs  "
          f"p99 {_p(rounds['now'], 99):.1f} µs (target <= 20 µs)")  # fmt: skip
    print(f"  before (documents deep-copied, places rebuilt): p50 {p_before:.1f} µs; "
          f"now/before {p_now / p_before:.2f}")  # fmt: skip
    try:
        geo = GeoIp2Fast()
    except ImportError:
        return
    geo.load()
    public = ["8.8.8.8", "81.2.69.160", "1.1.1.1", "133.242.0.1"]
    real = Ueba(UebaConfig(), MemoryStateStore(), geo)
    await _observe_times(real, 2000, public)
    times = await _observe_times(real, n, public)
    print(f"  with the shipped GeoIP database (cached lookups): p50 {_p(times, 50):.1f} µs  "
          f"p99 {_p(times, 99):.1f} µs")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(bench_tracing(args.calls))
    bench_audit(args.calls * 5)
    asyncio.run(bench_ueba(args.calls))


if __name__ == "__main__":
    main()
