"""The official Python SDK client works through the gateway in both eras, on every
downstream transport (Streamable HTTP, legacy SSE, stdio ``wrap``) and upstream transport."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client

from conftest import stdio_demo_upstream
from support.servers import free_port, run_gateway, spawn_http_server

MODES = ["legacy", "auto"]


async def _exercise(client: Client) -> None:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert {"echo", "add", "utc_now"} <= tools and "delete_everything" not in tools
    result = await client.call_tool("add", {"a": 2, "b": 3})
    assert result.content[0].text == "5.0"  # type: ignore[union-attr]
    read = await client.read_resource("demo://readme")
    assert "demo MCP server" in read.contents[0].text  # type: ignore[union-attr]
    prompt = await client.get_prompt("greet", {"name": "Bob"})
    assert "Bob" in prompt.messages[0].content.text  # type: ignore[union-attr]
    with pytest.raises(MCPError) as denied:
        await client.call_tool("delete_everything", {"confirm": True})
    assert denied.value.error.code == -32003


@pytest.fixture(params=["stdio", "http"])
async def demo_route(request: pytest.FixtureRequest, demo_http_upstream: str) -> AsyncIterator[str]:
    upstream: dict[str, Any] = (
        stdio_demo_upstream()
        if request.param == "stdio"
        else {"transport": "http", "url": demo_http_upstream}
    )
    config = {
        "upstreams": {"demo": upstream},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }
    async with run_gateway(config) as (url, _):
        yield url


@pytest.mark.parametrize("mode", MODES)
async def test_streamable_http_client_both_eras(demo_route: str, mode: str) -> None:
    async with Client(f"{demo_route}/mcp/demo", mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        await _exercise(client)


async def test_legacy_sse_client(demo_route: str) -> None:
    async with Client(sse_client(f"{demo_route}/sse/demo"), mode="legacy") as client:
        await _exercise(client)


@pytest.mark.parametrize("mode", MODES)
async def test_wrap_mode_over_stdio(mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "wardgate.cli",
            "wrap",
            "--sandbox",
            "insecure-none",
            "--deny-tool",
            "delete_*",
            "--",
            sys.executable,
            "-m",
            "wardgate.demo.server",
        ],
    )
    async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
        await _exercise(client)


@pytest.mark.parametrize("mode", MODES)
async def test_legacy_sse_upstream(mode: str) -> None:
    """A 2024-11-05 HTTP+SSE server behind the gateway serves modern clients."""
    port = free_port()
    argv = [sys.executable, "-m", "wardgate.demo.server", "--sse", str(port)]
    with spawn_http_server(argv, port):
        config = {
            "upstreams": {"old": {"transport": "sse", "url": f"http://127.0.0.1:{port}/sse"}},
            "routes": {"demo": {"upstreams": ["old"], "tools": {"deny": ["delete_*"]}}},
        }
        async with (
            run_gateway(config) as (url, _),
            Client(f"{url}/mcp/demo", mode=mode) as client,  # type: ignore[arg-type]
        ):
            await _exercise(client)
