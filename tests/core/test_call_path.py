"""The call as a unit, end to end: real clients, real upstreams, the real listener."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp import MCPError
from upstreams.upstream_helpers import (
    EVERYTHING,
    NODE,
    Recorder,
    bounded,
    eventually,
    full_client,
    needs_node,
)

from support.http import modern_body, modern_headers, post
from support.servers import gateway_events, run_gateway, serve_app
from wardgate.core.call import LISTEN, Call, Outcome
from wardgate.core.context import CallContext
from wardgate.errors import Denied
from wardgate.telemetry.events import CallEnded, GuardDecision
from wardgate.wire.jsonrpc import Message

META_ECHO = [sys.executable, str(Path(__file__).parent.parent / "servers" / "meta_echo_server.py")]


class DenyMethods:
    """Refuses every message (request or reply) whose method is listed."""

    name = "deny_methods"
    fail_open = False

    def __init__(self, *methods: str) -> None:
        self.methods = frozenset(methods)

    async def on_request(self, call: Call, message: Message) -> Message:
        raise Denied(f"{message.method} is refused in this test")

    async def on_message(self, call: Call, message: Message) -> Message | None:
        raise Denied(f"{message.method} is refused in this test")


class Spy:
    """Keeps every call's context and outcome."""

    name = "spy"
    methods = None
    fail_open = False

    def __init__(self) -> None:
        self.contexts: list[CallContext] = []
        self.outcomes: list[Outcome] = []

    async def on_request(self, call: Call, message: Message) -> Message:
        self.contexts.append(call.ctx)
        return message

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


@needs_node
async def test_a_denied_server_request_is_answered_upstream_not_left_to_time_out() -> None:
    config = {
        "upstreams": {
            "everything": {
                "transport": "stdio",
                "command": [NODE, str(EVERYTHING), "stdio"],
                "sandbox": "insecure-none",
                "request_timeout_seconds": 120,
            }
        },
        "routes": {"ev": {"upstreams": ["everything"]}},
    }
    guards = {"ev": [DenyMethods("sampling/createMessage")]}
    async with run_gateway(config, extra_guards=guards) as (base, gateway):
        rec = Recorder()
        async with full_client(f"{base}/mcp/ev", rec) as client:
            # Far sooner than the 120 s the upstream would otherwise wait for an answer.
            outcome: Any
            try:
                outcome = await bounded(
                    client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}),
                    20,
                )
            except MCPError as exc:
                outcome = exc
            assert rec.sampling == []  # the client never saw the refused request
            echo = await bounded(client.call_tool("echo", {"message": "still here"}))
            assert "still here" in str(echo.content[0])
        decisions = gateway_events(gateway).of(GuardDecision)
        assert any(
            d.method == "sampling/createMessage" and d.guard == "deny_methods" for d in decisions
        )
    assert outcome is not None


async def _handshake(url: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    status, answer_headers, _ = await post(url, init, headers)
    assert status == 200
    return answer_headers["mcp-session-id"]


async def _get_stream_status(url: str, session_id: str) -> tuple[int, Any]:
    import aiohttp

    headers = {
        "accept": "text/event-stream",
        "mcp-session-id": session_id,
        "mcp-protocol-version": "2025-11-25",
    }
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as resp:
        if resp.status != 200:
            return resp.status, orjson.loads(await resp.read())
        return resp.status, None


async def test_a_get_stream_passes_the_request_guards(demo_http_upstream: str) -> None:
    config = {
        "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
        "routes": {"demo": {"upstreams": ["demo"]}},
    }
    async with run_gateway(config, extra_guards={"demo": [DenyMethods(LISTEN)]}) as (base, gw):
        url = f"{base}/mcp/demo"
        session_id = await _handshake(url)
        status, body = await bounded(_get_stream_status(url, session_id))
        assert status == 403
        assert body["error"]["data"]["code"] == "wardgate.denied"
        # The session itself still serves calls.
        ok, _, listed = await post(
            url,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-session-id": session_id,
                "mcp-protocol-version": "2025-11-25",
            },
        )
        assert ok == 200 and listed["result"]["tools"]
        ended = gateway_events(gw).of(CallEnded)
        assert any(e.method == LISTEN and e.status == "denied" for e in ended)


async def test_every_guard_sees_the_resolved_context(demo_http_upstream: str) -> None:
    spy = Spy()
    config = {
        "upstreams": {"demo": {"transport": "http", "url": demo_http_upstream}},
        "routes": {"demo": {"upstreams": ["demo"]}},
    }
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with run_gateway(config, extra_guards={"demo": [spy]}) as (base, _):
        headers = modern_headers("tools/call", "echo") | {"traceparent": trace}
        body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        status, _, answer = await post(f"{base}/mcp/demo", body, headers)
        assert status == 200 and "result" in answer
        bad = modern_headers("tools/list") | {
            "traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"
        }
        await post(f"{base}/mcp/demo", modern_body("tools/list"), bad)
    first, second = spy.contexts
    assert (first.upstream, first.target, first.era, first.transport) == (
        "demo",
        "echo",
        "modern",
        "http",
    )
    assert first.client_addr == "127.0.0.1" and first.received_at > 0
    assert first.trace is not None and first.trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert second.trace is None  # an all-zero trace id is malformed: ignored
    assert [o.status for o in spy.outcomes] == ["ok", "ok"]


async def _recording_upstream(seen: list[dict[str, str]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append(headers)
        request = orjson.loads(body)
        answer = orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"tools": []}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


@pytest.mark.parametrize("propagate", [True, False])
async def test_trace_context_and_decision_id_reach_an_http_upstream_only_by_config(
    propagate: bool,
) -> None:
    seen: list[dict[str, str]] = []
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with serve_app(await _recording_upstream(seen)) as upstream_url:
        config = {
            "upstreams": {
                "rec": {
                    "transport": "http",
                    "url": f"{upstream_url}/mcp",
                    "propagate": {"trace": propagate, "decision_id": propagate},
                }
            },
            "routes": {"rec": {"upstreams": ["rec"]}},
        }
        async with run_gateway(config) as (base, gateway):
            headers = modern_headers("tools/list") | {"traceparent": trace, "tracestate": "a=b"}
            status, _, _ = await post(f"{base}/mcp/rec", modern_body("tools/list"), headers)
            assert status == 200
            (ended,) = gateway_events(gateway).of(CallEnded)
    (upstream_saw,) = seen
    if propagate:
        assert upstream_saw["traceparent"] == trace and upstream_saw["tracestate"] == "a=b"
        assert upstream_saw["wardgate-decision-id"] == ended.decision_id
    else:
        assert "traceparent" not in upstream_saw and "wardgate-decision-id" not in upstream_saw


async def test_trace_context_and_decision_id_reach_a_stdio_upstream_in_meta() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    config = {
        "upstreams": {
            "echo": {
                "transport": "stdio",
                "command": META_ECHO,
                "sandbox": "insecure-none",
                "propagate": {"trace": True, "decision_id": True},
            }
        },
        "routes": {"echo": {"upstreams": ["echo"]}},
    }
    async with run_gateway(config) as (base, gateway):
        headers = modern_headers("tools/call", "meta") | {"traceparent": trace}
        body = modern_body("tools/call", {"name": "meta", "arguments": {}})
        status, _, answer = await post(f"{base}/mcp/echo", body, headers)
        assert status == 200
        (ended,) = gateway_events(gateway).of(CallEnded)
    meta = answer["result"]["structuredContent"]
    assert meta["traceparent"] == trace
    assert meta["io.wardgate/decisionId"] == ended.decision_id
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"  # the client's, kept


async def _endless_sse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An upstream that answers every POST with an SSE stream that never ends."""
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    note = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "x" * 4000},
        }
    )
    while True:
        await send(
            {"type": "http.response.body", "body": b"data: " + note + b"\n\n", "more_body": True}
        )
        await asyncio.sleep(0)


@pytest.fixture
async def endless_route() -> AsyncIterator[tuple[str, Any]]:
    async with serve_app(_endless_sse) as upstream_url:
        config = {
            "server": {"client_send_timeout_seconds": 1},
            "upstreams": {
                "endless": {"transport": "http", "url": f"{upstream_url}/mcp"},
                "echo": {"transport": "stdio", "command": META_ECHO, "sandbox": "insecure-none"},
            },
            "routes": {"endless": {"upstreams": ["endless"]}, "echo": {"upstreams": ["echo"]}},
        }
        async with run_gateway(config) as (base, gateway):
            yield base, gateway


async def test_a_client_that_stops_reading_is_cut_off(endless_route: tuple[str, Any]) -> None:
    base, gateway = endless_route
    host, port = base.removeprefix("http://").split(":")
    body = orjson.dumps(modern_body("tools/call", {"name": "flood", "arguments": {}}))
    head = "".join(f"{k}: {v}\r\n" for k, v in modern_headers("tools/call", "flood").items())
    request = (
        f"POST /mcp/endless HTTP/1.1\r\nhost: {host}:{port}\r\n{head}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(request)  # ... and never read a byte of the answer
    try:
        events = gateway_events(gateway)

        def cut() -> bool:
            return any(
                e.route == "endless" and e.status == "client_gone" for e in events.of(CallEnded)
            )

        # While the stuck client is being cut off, another client is served.
        status, _, answer = await post(
            f"{base}/mcp/echo",
            modern_body("tools/call", {"name": "meta", "arguments": {}}),
            modern_headers("tools/call", "meta"),
        )
        assert status == 200 and "result" in answer
        await eventually(cut, 15)
    finally:
        sock.close()
