"""Upstream connections and processes are pooled and reused, never set up per call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
from mcp import Client

from support.http import modern_body, modern_headers, post
from support.servers import run_gateway, serve_app

FAULTY = [sys.executable, str(Path(__file__).parents[1] / "servers" / "faulty_server.py")]


class InstantUpstream:
    """Answers every request at once with JSON; records the client port of each."""

    def __init__(self) -> None:
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
        result = {"jsonrpc": "2.0", "id": request["id"], "result": {"content": []}}
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(result)})


async def test_http_upstream_connection_is_kept_alive() -> None:
    upstream = InstantUpstream()
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


def _time_wait_to(port: int) -> int:
    out = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.rstrip().endswith(f":{port}"))


async def test_sse_replies_leave_the_connection_reusable(demo_http_upstream: str) -> None:
    """The SDK's server answers a session's calls on an SSE stream it ends a moment later;
    the gateway reads that end before relaying, so the connection goes back to the pool."""
    port = int(demo_http_upstream.rsplit(":", 1)[1].split("/", 1)[0])
    config = {
        "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
        "routes": {"demo": {"upstreams": ["demo"]}},
    }
    async with (
        run_gateway(config) as (url, _),
        Client(f"{url}/mcp/demo", mode="legacy") as client,
    ):
        before = _time_wait_to(port)
        for i in range(30):
            result = await client.call_tool("echo", {"text": str(i)})
            assert result.content[0].text == str(i)  # type: ignore[union-attr]
        after = _time_wait_to(port)
    assert after - before <= 3, f"{after - before} upstream connections closed for 30 calls"
