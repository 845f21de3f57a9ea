"""A stdio upstream that answers with JSON nested too deep fails that call at once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from support.http import modern_body, modern_headers, post
from support.servers import run_gateway

DEEP = [sys.executable, str(Path(__file__).parent.parent / "servers" / "deep_stdio_server.py")]


@pytest.mark.parametrize("depth", [300, 2000, 10_000])
async def test_a_reply_nested_too_deep_fails_its_call_and_the_next_call_works(depth: int) -> None:
    config = {
        "upstreams": {
            "deep": {
                "transport": "stdio",
                "command": DEEP,
                "sandbox": "insecure-none",
                "request_timeout_seconds": 60,
            }
        },
        "routes": {"deep": {"upstreams": ["deep"]}},
    }
    async with run_gateway(config) as (url, _):
        body = modern_body("tools/call", {"name": "deep", "arguments": {"depth": depth}})
        status, _, answer = await asyncio.wait_for(
            post(f"{url}/mcp/deep", body, modern_headers("tools/call", "deep")), 20
        )  # far sooner than the 60 s timeout
        assert status == 200 and answer["error"]["code"] == -32603  # that call's error, not a 500
        body = modern_body("tools/call", {"name": "ok", "arguments": {}}, request_id=2)
        status, _, answer = await post(f"{url}/mcp/deep", body, modern_headers("tools/call", "ok"))
        assert status == 200 and answer["result"]["content"][0]["text"] == "ok"
