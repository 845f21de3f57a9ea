"""Metrics and health on the separate listener: scraped over HTTP, labels bounded, readiness
follows the shared store."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from limits.test_store_failure import OwnRedis, own_redis  # noqa: F401 - a fixture
from prometheus_client.parser import text_string_to_metric_families

from conftest import stdio_demo_upstream
from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway


def _config(metrics_port: int, **extra: Any) -> dict[str, Any]:
    return {
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_everything"]}}},
        "telemetry": {"metrics_port": metrics_port, "max_tool_labels": 3},
        **extra,
    }


async def _rpc(url: str, method: str, params: dict[str, Any], rid: int, name: str | None) -> Any:
    return await post(
        f"{url}/mcp/demo", modern_body(method, params, rid), modern_headers(method, name)
    )


async def _get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.read()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


async def test_scrape_counts_calls_denials_and_bounds_tool_labels() -> None:
    port = free_port()
    async with run_gateway(_config(port)) as (url, _):
        await _rpc(url, "tools/list", {}, 1, None)
        status, _, answer = await _rpc(
            url, "tools/call", {"name": "echo", "arguments": {"text": "a"}}, 2, "echo"
        )
        assert "result" in answer
        await _rpc(
            url,
            "tools/call",
            {"name": "delete_everything", "arguments": {}},
            3,
            "delete_everything",
        )
        # A client spraying made-up tool and method names must not grow the label sets.
        for i in range(30):
            await _rpc(
                url, "tools/call", {"name": f"made_up_{i}", "arguments": {}}, 10 + i, f"made_up_{i}"
            )
            await _rpc(url, f"x/made_up_{i}", {}, 100 + i, None)
        status, body = await _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
    samples = _samples(body.decode())
    calls = {(lb["method"], lb["status"]): v for n, lb, v in samples if n == "wardgate_calls_total"}
    assert calls[("tools/list", "ok")] == 1
    assert calls[("tools/call", "denied")] == 1
    denials = [(lb, v) for n, lb, v in samples if n == "wardgate_denials_total"]
    assert ({"route": "demo", "guard": "tool_access", "code": "wardgate.denied"}, 1.0) in denials
    tools = {lb["tool"] for n, lb, _ in samples if n == "wardgate_call_duration_seconds_count"}
    # The demo lists echo, add, utc_now, delete_everything: the fourth is past the cap.
    assert tools == {"", "echo", "other"}
    methods = {lb["method"] for n, lb, _ in samples if n == "wardgate_calls_total"}
    assert not any(m.startswith("x/") for m in methods)
    count = {
        lb["tool"]: v
        for n, lb, v in samples
        if n == "wardgate_call_duration_seconds_count" and lb["method"] == "tools/call"
    }
    assert sum(count.values()) == 32


async def test_health_and_readiness_follow_the_shared_store(own_redis: OwnRedis) -> None:  # noqa: F811
    port = free_port()
    limits = {
        "store": "redis",
        "redis": {"url": f"redis://127.0.0.1:{own_redis.port}/0", "key_prefix": "wg-tel-test:"},
        "on_store_failure": "deny",
        "store_retry_seconds": 0.05,
    }
    async with run_gateway(_config(port, limits=limits)) as (url, _):
        base = f"http://127.0.0.1:{port}"
        assert (await _get(f"{base}/healthz"))[0] == 200
        status, body = await _get(f"{base}/readyz")
        assert status == 200 and orjson.loads(body)["checks"]["state_store"] == "ok"
        own_redis.stop()
        status, body = await _get(f"{base}/readyz")
        assert status == 503
        assert orjson.loads(body)["checks"]["state_store"] != "ok"
        assert (await _get(f"{base}/healthz"))[0] == 200
        # The reasons are on the ops listener only: the MCP listener has no such path.
        status, body = await _get(f"{url}/readyz")
        assert status == 404 and b"state_store" not in body
        own_redis.start()
        status, _ = await _get(f"{base}/readyz")
        assert status == 200


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian) not installed")
async def test_a_real_prometheus_scrapes_the_gateway(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: wardgate\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    async with run_gateway(_config(port)) as (url, _):
        text = "key AKIAIOSFODNN7EXAMPLE"  # redacted on the way back, and counted
        await _rpc(url, "tools/call", {"name": "echo", "arguments": {"text": text}}, 1, "echo")
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            query = f"http://127.0.0.1:{prom_port}/api/v1/query?query=wardgate_calls_total"
            found: list[Any] = []
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # polling Prometheus' API, bounded by the deadline
                try:
                    status, body = await _get(query)
                except aiohttp.ClientError:
                    continue
                if status == 200:
                    found = orjson.loads(body)["data"]["result"]
            assert found, "Prometheus never scraped wardgate_calls_total"
            metric = found[0]["metric"]
            assert metric["method"] == "tools/call" and metric["status"] == "ok"
            assert float(found[0]["value"][1]) == 1
            # The same scrape carried the redaction counter, by kind: the SDK's echo
            # answers the text twice (content and structuredContent), both redacted.
            query = (
                f"http://127.0.0.1:{prom_port}/api/v1/query?"
                'query=wardgate_redactions_total{kind="aws_access_key_id"}'
            )
            status, body = await _get(query)
            redacted = orjson.loads(body)["data"]["result"]
            assert status == 200 and float(redacted[0]["value"][1]) == 2
        finally:
            proc.terminate()
            proc.wait(10)


async def test_readiness_names_an_identity_key_set_that_never_arrived() -> None:
    from auth._support import RESOURCE, LocalIssuer

    good = LocalIssuer.create("https://good-idp.example", "good")

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(good.jwks())

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    port = free_port()
    config = _config(
        port,
        auth={
            "resource": RESOURCE,
            "issuers": [
                {"issuer": good.name, "jwks_uri": f"{base}/jwks"},
                {
                    "issuer": "https://gone-idp.example",
                    "jwks_uri": f"http://127.0.0.1:{free_port()}/jwks",
                },
            ],
            "allow_loopback_jwks": True,
        },
    )
    try:
        async with run_gateway(config):
            status, body = await _get(f"http://127.0.0.1:{port}/readyz")
    finally:
        await runner.cleanup()
    checks = orjson.loads(body)["checks"]
    assert status == 503
    assert checks[f"jwks:{good.name}"] == "ok"
    assert checks["jwks:https://gone-idp.example"] == "key set never fetched"
