"""A hostile Streamable HTTP upstream costs only its own calls: each misbehaviour ends
in a clean JSON-RPC error within the call's deadline, and a legitimate call made beside
it, on the same upstream, still succeeds."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway, spawn_http_server

HOSTILE = Path(__file__).parents[1] / "servers" / "hostile_http_server.py"
#: The call deadline of the "short" upstream, in seconds.
DEADLINE = 1.0


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    port = free_port()
    with spawn_http_server([sys.executable, str(HOSTILE), str(port)], port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def gateway(hostile_url: str) -> AsyncIterator[str]:
    config = {
        "upstreams": {
            "short": {
                "transport": "http",
                "url": hostile_url + "/mcp",
                "request_timeout_seconds": DEADLINE,
            },
            "long": {"transport": "http", "url": hostile_url + "/mcp"},
            "deaf": {
                "transport": "http",
                "url": hostile_url + "/noread",
                "request_timeout_seconds": DEADLINE,
            },
        },
        "routes": {
            "short": {"upstreams": ["short"]},
            "long": {"upstreams": ["long"]},
            "deaf": {"upstreams": ["deaf"]},
        },
    }
    async with run_gateway(config) as (url, _):
        yield url


async def call(
    base: str, route: str, tool: str, args: dict[str, Any] | None = None
) -> tuple[int, dict[str, str], Any]:
    body = modern_body("tools/call", {"name": tool, "arguments": args or {}})
    return await post(f"{base}/mcp/{route}", body, modern_headers("tools/call", tool))


async def hostile_beside_legitimate(
    base: str, route: str, tool: str, args: dict[str, Any] | None = None
) -> tuple[int, Any, float]:
    """Start the hostile call, make a legitimate one while it is in flight, then
    return the hostile call's (status, body, seconds taken)."""
    started = time.monotonic()
    hostile = asyncio.create_task(call(base, route, tool, args))
    status, _, body = await asyncio.wait_for(call(base, route, "ok"), 10)
    assert status == 200 and body["result"]["content"][0]["text"] == "fine"
    status, _, body = await asyncio.wait_for(hostile, 30)
    return status, body, time.monotonic() - started


# Where the upstream had already answered 200 with a stream, the error comes in-band
# (HTTP 200, a JSON-RPC error for the call); where it never answered, as HTTP 504.
@pytest.mark.parametrize(("tool", "http_status"), [("hang", 504), ("pings", 200), ("empty", 200)])
async def test_an_upstream_that_stalls_is_cut_at_the_call_deadline(
    gateway: str, tool: str, http_status: int
) -> None:
    # Keep-alive comments and empty events arrive every 20 ms: a per-read timeout
    # would never fire. The deadline is for the whole call.
    status, body, took = await hostile_beside_legitimate(gateway, "short", tool)
    assert status == http_status and body["error"]["code"] == -32001
    assert body["id"] == 1
    assert "decisionId" in body["error"]["data"]
    assert DEADLINE * 0.9 <= took < DEADLINE + 3


async def test_an_upstream_that_stops_reading_is_cut_at_the_call_deadline(gateway: str) -> None:
    # 3 MiB of arguments: more than the socket buffers take, so the gateway's write
    # stays pending on a peer that reads nothing.
    big = {"blob": "x" * (3 * 2**20)}
    started = time.monotonic()
    deaf = asyncio.create_task(call(gateway, "deaf", "ok", big))
    status, _, body = await asyncio.wait_for(call(gateway, "short", "ok"), 10)
    assert status == 200 and body["result"]["content"][0]["text"] == "fine"
    status, _, body = await asyncio.wait_for(deaf, 10)
    assert status == 504 and body["error"]["code"] == -32001
    assert time.monotonic() - started < DEADLINE + 3


async def test_an_endless_event_is_cut_at_the_size_limit(gateway: str, hostile_url: str) -> None:
    async with aiohttp.ClientSession() as client, client.get(hostile_url + "/stats") as resp:
        before = (await resp.json())["endless_sent"]
    status, body, _ = await hostile_beside_legitimate(gateway, "long", "endless")
    assert status == 200 and body["error"]["code"] == -32603 and body["id"] == 1
    async with aiohttp.ClientSession() as client, client.get(hostile_url + "/stats") as resp:
        sent = (await resp.json())["endless_sent"] - before
    # The gateway stopped reading once the event passed the limit (16 MiB), not
    # later: what the upstream got out is the limit plus socket buffers.
    assert 16 * 2**20 <= sent < 24 * 2**20


@pytest.mark.parametrize(("tool", "http_status"), [("deep_json", 502), ("deep_sse", 200)])
@pytest.mark.parametrize("depth", [65, 300, 10_000])
async def test_a_reply_nested_too_deep_is_an_upstream_error(
    gateway: str, tool: str, http_status: int, depth: int
) -> None:
    status, body, _ = await hostile_beside_legitimate(gateway, "long", tool, {"depth": depth})
    assert status == http_status and body["error"]["code"] == -32603
    assert body["id"] == 1 and "decisionId" in body["error"]["data"]


async def test_a_reply_within_the_depth_limit_is_relayed(gateway: str) -> None:
    # {"jsonrpc", "result": {"x": [[...]]}}: the object and result add two levels.
    status, _, body = await call(gateway, "long", "deep_json", {"depth": 62})
    assert status == 200 and body["result"]["content"] == []


def _sse_messages(text: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[len("data: ") :])
        for line in text.splitlines()
        if line.startswith("data: ") and line.strip() != "data:"
    ]


async def test_several_messages_in_one_json_body_are_relayed_whole(gateway: str) -> None:
    status, headers, body = await call(gateway, "long", "array")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    messages = _sse_messages(body)
    assert [m.get("method") for m in messages] == ["notifications/message", None]
    assert messages[0]["params"]["data"] == "before the response"
    assert messages[1]["id"] == 1
    assert messages[1]["result"]["content"][0]["text"] == "after the notification"
