"""A legacy HTTP+SSE upstream whose reply nests too deep costs only that call: it gets
an error at once (not at its timeout), and a call beside it in the same session works."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, MCPError

from support.servers import free_port, run_gateway, spawn_http_server

HOSTILE = Path(__file__).parents[1] / "servers" / "hostile_sse_server.py"


@pytest.fixture(scope="module")
def sse_url() -> Iterator[str]:
    port = free_port()
    with spawn_http_server([sys.executable, str(HOSTILE), str(port)], port):
        yield f"http://127.0.0.1:{port}/sse"


@pytest.mark.parametrize("depth", [300, 10_000])
async def test_a_reply_nested_too_deep_fails_its_call_at_once(sse_url: str, depth: int) -> None:
    config = {
        "upstreams": {"old": {"transport": "sse", "url": sse_url, "request_timeout_seconds": 60}},
        "routes": {"old": {"upstreams": ["old"]}},
    }
    async with run_gateway(config) as (url, _), Client(f"{url}/mcp/old", mode="legacy") as client:
        started = time.monotonic()
        deep = asyncio.create_task(client.call_tool("deep", {"depth": depth}))
        ok = await asyncio.wait_for(client.call_tool("ok", {}), 10)
        assert ok.content[0].text == "fine"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as failed:
            await asyncio.wait_for(deep, 10)
        assert failed.value.error.code == -32603
        assert time.monotonic() - started < 10  # not the 60 s request timeout
        again = await asyncio.wait_for(client.call_tool("ok", {}), 10)
        assert again.content[0].text == "fine"  # type: ignore[union-attr]
