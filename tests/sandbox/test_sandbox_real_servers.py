"""Real PyPI servers (mcp-server-time, mcp-server-fetch) sandboxed by the gateway from
its config, called through the gateway by the official Python SDK client."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from support.servers import free_port, run_gateway
from wardgate.upstream.runners import gvisor_works
from wardgate.upstream.stdio import StdioUpstream

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

BIN = Path(sys.prefix) / "bin"
BASE = str(Path(os.path.realpath(sys.executable)).parent.parent)
RUNNERS = [
    "bubblewrap",
    pytest.param("gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="no runsc")),
]


def _config(upstreams: dict[str, Any]) -> dict[str, Any]:
    return {
        "sandbox": {"allowed_host_paths": ["/usr", sys.prefix, BASE]},
        "upstreams": upstreams,
        "routes": {n: {"upstreams": [n]} for n in upstreams},
    }


def _server(command: list[str], sandbox: str, **extra: Any) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": command,
        "sandbox": sandbox,
        "read_only_paths": [sys.prefix, BASE],
        **extra,
    }


@pytest.mark.parametrize("runner", RUNNERS)
async def test_time_server_sandboxed_through_the_gateway(runner: str) -> None:
    config = _config({"time": _server([str(BIN / "mcp-server-time")], runner)})
    async with run_gateway(config) as (url, gateway):
        upstream = gateway.upstreams["time"]
        assert isinstance(upstream, StdioUpstream)
        assert upstream.sandbox.name == runner
        async with Client(f"{url}/mcp/time", mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "get_current_time" in tools
            result = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert "UTC" in result.content[0].text  # type: ignore[union-attr]


@pytest.fixture
async def site() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"hello from the allowed site"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.2", port)
    yield port
    server.close()


@pytest.mark.parametrize("runner", RUNNERS)
async def test_fetch_server_sandboxed_with_egress_through_the_gateway(
    site: int, runner: str
) -> None:
    fetch = _server(
        [str(BIN / "mcp-server-fetch"), "--ignore-robots-txt", "--allow-private-ips"],
        runner,
        egress=[f"127.0.0.2:{site}"],
        egress_allow_addresses=["127.0.0.2"],
        sandbox_limits={"memory_mib": 1024},
    )
    async with (
        run_gateway(_config({"fetch": fetch})) as (url, _),
        Client(f"{url}/mcp/fetch", mode="legacy") as client,
    ):
        ok = await client.call_tool("fetch", {"url": f"http://127.0.0.2:{site}/", "raw": True})
        assert not ok.is_error
        assert "allowed site" in ok.content[0].text  # type: ignore[union-attr]
        refused = await client.call_tool(
            "fetch", {"url": "http://169.254.169.254/latest/meta-data/", "raw": True}
        )
        assert refused.is_error
