"""Upstream connections and processes are pooled and reused, never set up per call."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from support.http import modern_body, modern_headers, post
from support.servers import run_gateway, serve_app

FAULTY = [sys.executable, str(Path(__file__).parents[1] / "servers" / "faulty_server.py")]


class InstantUpstream:
    """Answers every request at once, as JSON or as an SSE stream; records client ports."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self.ports: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.ports.append(scope["client"][1])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        result = {
            "jsonrpc": "2.0",
            "id": request["id"],
            "result": {"content": [], "resultType": "complete"},
        }
        if self.sse:
            payload = b"data: " + orjson.dumps(result) + b"\n\n"
            ctype = b"text/event-stream"
        else:
            payload = orjson.dumps(result)
            ctype = b"application/json"
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]}
        )
        await send({"type": "http.response.body", "body": payload})


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
async def test_http_upstream_connection_is_kept_alive(sse: bool) -> None:
    upstream = InstantUpstream(sse)
    async with serve_app(upstream) as upstream_url:
        config = {
            "upstreams": {"up": {"transport": "http", "url": upstream_url + "/mcp"}},
            "routes": {"r": {"upstreams": ["up"]}},
        }
        async with run_gateway(config) as (url, _):
            for _ in range(20):
                status, _, body = await post(
                    f"{url}/mcp/r",
                    modern_body("tools/call", {"name": "x", "arguments": {}}),
                    modern_headers("tools/call", "x"),
                )
                assert status == 200 and body["result"]["content"] == []
    assert len(upstream.ports) == 20
    assert len(set(upstream.ports)) == 1  # one pooled connection served every call


async def test_stateless_calls_share_one_stdio_process() -> None:
    config = {
        "upstreams": {"f": {"transport": "stdio", "command": FAULTY, "sandbox": "insecure-none"}},
        "routes": {"f": {"upstreams": ["f"]}},
    }
    async with run_gateway(config) as (url, _):
        answers = set()
        for _ in range(5):
            _, _, body = await post(
                f"{url}/mcp/f",
                modern_body("tools/call", {"name": "ok", "arguments": {}}),
                modern_headers("tools/call", "ok"),
            )
            answers.add(body["result"]["content"][0]["text"])
    assert len(answers) == 1 and next(iter(answers)).startswith("ok from")
