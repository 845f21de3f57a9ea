"""The gateway in front of ``mcp-server-time`` (PyPI; official Python SDK) over stdio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from mcp import Client, MCPError
from upstream_helpers import HANDSHAKE, MODERN, bounded, list_all, texts, time_stdio

from support.servers import run_gateway

MODES = ["legacy", "auto"]


@pytest.fixture
async def time_route() -> AsyncIterator[str]:
    config = {"upstreams": {"time": time_stdio()}, "routes": {"time": {"upstreams": ["time"]}}}
    async with run_gateway(config) as (base, _):
        yield f"{base}/mcp/time"


@pytest.mark.parametrize("mode", MODES)
async def test_time_tools_both_modes(time_route: str, mode: str) -> None:
    async with Client(time_route, mode=mode, read_timeout_seconds=30) as client:
        # The server runs the 2.x SDK: "auto" gets the stateless 2026 era end to end.
        assert client.protocol_version == (HANDSHAKE if mode == "legacy" else MODERN)
        tools, _ = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"get_current_time", "convert_time"}
        assert by_name["get_current_time"].input_schema["required"] == ["timezone"]
        assert set(by_name["convert_time"].input_schema["required"]) == {
            "source_timezone",
            "time",
            "target_timezone",
        }

        now = await bounded(client.call_tool("get_current_time", {"timezone": "Europe/Paris"}))
        assert not now.is_error
        assert now.structured_content is not None
        assert now.structured_content["timezone"] == "Europe/Paris"
        stamp = datetime.fromisoformat(now.structured_content["datetime"])
        assert stamp.utcoffset() is not None
        assert "Europe/Paris" in texts(now)

        converted = await bounded(
            client.call_tool(
                "convert_time",
                {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
            )
        )
        assert not converted.is_error
        data = converted.structured_content
        assert data is not None
        assert datetime.fromisoformat(data["source"]["datetime"]).hour == 12
        assert datetime.fromisoformat(data["target"]["datetime"]).hour == 21
        assert data["time_difference"] == "+9.0h"

        # A bad argument is the upstream's error, relayed (as an error result or -32602).
        try:
            bad = await bounded(client.call_tool("get_current_time", {"timezone": "Mars/Base"}))
        except MCPError:
            pass
        else:
            assert bad.is_error and "Mars/Base" in texts(bad)
