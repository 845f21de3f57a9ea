"""An upstream that crashes or hangs costs the calls in flight an error, never a hang,
and the gateway keeps serving everyone else."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client, MCPError

from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway, serve_app

FAULTY = [sys.executable, str(Path(__file__).parents[1] / "servers" / "faulty_server.py")]


@pytest.fixture
async def faulty_route() -> AsyncIterator[str]:
    config = {
        "upstreams": {
            "faulty": {
                "transport": "stdio",
                "command": FAULTY,
                "sandbox": "insecure-none",
                # Long enough for the SDK server to start on a loaded machine (the
                # deadline covers the first call's process start too).
                "request_timeout_seconds": 8,
            }
        },
        "routes": {"faulty": {"upstreams": ["faulty"]}},
    }
    async with run_gateway(config) as (url, _):
        yield f"{url}/mcp/faulty"


def _text(result: object) -> str:
    return result.content[0].text  # type: ignore[attr-defined,no-any-return]


async def test_crash_mid_call_errors_and_the_server_restarts(faulty_route: str) -> None:
    async with Client(faulty_route, mode="legacy") as client:
        before = _text(await client.call_tool("ok", {}))
        with pytest.raises(MCPError) as failed:
            await asyncio.wait_for(client.call_tool("crash", {}), 20)
        assert failed.value.error.code == -32603
        after = _text(await asyncio.wait_for(client.call_tool("ok", {}), 20))
        assert after.startswith("ok from") and after != before  # a fresh process, same session


async def test_hung_upstream_times_out_and_others_keep_working(faulty_route: str) -> None:
    async with (
        Client(faulty_route, mode="legacy") as hung,
        Client(faulty_route, mode="auto") as other,
    ):
        pending = asyncio.create_task(hung.call_tool("hang", {}))
        assert _text(await asyncio.wait_for(other.call_tool("ok", {}), 20)).startswith("ok")
        with pytest.raises(MCPError) as failed:
            await asyncio.wait_for(pending, 30)
        assert failed.value.error.code == -32001


async def test_2026_crash_on_shared_process(faulty_route: str) -> None:
    status, _, body = await post(
        faulty_route,
        modern_body("tools/call", {"name": "crash", "arguments": {}}),
        modern_headers("tools/call", "crash"),
    )
    assert body["error"]["code"] == -32603
    status, _, body = await post(
        faulty_route,
        modern_body("tools/call", {"name": "ok", "arguments": {}}),
        modern_headers("tools/call", "ok"),
    )
    assert status == 200 and body["result"]["content"][0]["text"].startswith("ok from")


async def _silent_app(scope: dict[str, object], receive: object, send: object) -> None:
    await asyncio.sleep(3600)  # accepts the request, never answers


async def test_http_upstream_that_never_answers_times_out() -> None:
    async with serve_app(_silent_app) as upstream_url:
        config = {
            "upstreams": {
                "slow": {
                    "transport": "http",
                    "url": upstream_url + "/mcp",
                    "request_timeout_seconds": 1,
                }
            },
            "routes": {"slow": {"upstreams": ["slow"]}},
        }
        async with run_gateway(config) as (url, _):
            status, _, body = await asyncio.wait_for(
                post(f"{url}/mcp/slow", modern_body("tools/list"), modern_headers("tools/list")), 10
            )
            assert status == 504 and body["error"]["code"] == -32001
            assert "decisionId" in body["error"]["data"]


async def test_dead_http_upstream_is_502() -> None:
    config = {
        "upstreams": {"dead": {"transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp"}},
        "routes": {"dead": {"upstreams": ["dead"]}},
    }
    async with run_gateway(config) as (url, _):
        status, _, body = await post(
            f"{url}/mcp/dead", modern_body("tools/list"), modern_headers("tools/list")
        )
        assert status == 502 and body["error"]["code"] == -32603
        assert "127.0.0.1" not in str(body)  # the upstream's address is not the client's business
