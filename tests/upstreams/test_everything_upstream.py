"""The gateway in front of the reference ``@modelcontextprotocol/server-everything``
(TypeScript SDK), over stdio and over Streamable HTTP, driven by the official Python
SDK client: every tool, resources, prompts, progress, cancellation, sampling,
elicitation, roots and logging."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client, MCPError, types
from upstream_helpers import (
    HANDSHAKE,
    MODERN,
    ROOT_URI,
    Recorder,
    bounded,
    eventually,
    everything_http,
    everything_stdio,
    full_client,
    list_all,
    needs_node,
    sample_args,
    texts,
)

from support.servers import run_gateway
from wardgate.gateway import Gateway
from wardgate.upstream.stdio import StdioUpstream

pytestmark = [needs_node, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

SECRET_ENV = "WARDGATE_UPSTREAM_TEST_SECRET"

#: Arguments for the tools whose required inputs alone would not make a useful call.
ARGS: dict[str, dict[str, Any]] = {
    "echo": {"message": "hello through the gateway"},
    "get-annotated-message": {"messageType": "success", "includeImage": True},
    "get-resource-links": {"count": 2},
    "get-resource-reference": {"resourceType": "Text", "resourceId": 1},
    "get-structured-content": {"location": "Chicago"},
    "get-sum": {"a": 2, "b": 3},
    # A data: URI, so that the test needs no network.
    "gzip-file-as-resource": {
        "name": "hello.txt.gz",
        "data": "data:text/plain;base64," + base64.b64encode(b"hello, wardgate").decode(),
        "outputType": "resource",
    },
    "trigger-long-running-operation": {"duration": 1, "steps": 2},
    "trigger-url-elicitation": {"url": "https://example.com/consent"},
    "trigger-sampling-request": {"prompt": "Say hi", "maxTokens": 20},
    "simulate-research-query": {"topic": "gateways"},
}

#: What this version of server-everything offers a client with every capability.
EXPECTED_TOOLS = {
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
    "get-roots-list",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
    "trigger-sampling-request",
    "simulate-research-query",
}


@dataclass
class Target:
    url: str
    gateway: Gateway
    transport: str


@pytest.fixture(scope="module")
def everything_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with everything_http(tmp_path_factory.mktemp("everything")) as url:
        yield url


@pytest.fixture(params=["stdio", "http"])
async def target(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Target]:
    # A secret in the gateway's environment must never reach a stdio upstream.
    monkeypatch.setenv(SECRET_ENV, "s3cret-value")
    if request.param == "stdio":
        upstream = everything_stdio()
    else:
        url = request.getfixturevalue("everything_http_url")
        upstream = {"transport": "http", "url": url}
    config = {
        "upstreams": {"everything": upstream},
        "routes": {"ev": {"upstreams": ["everything"]}},
    }
    async with run_gateway(config) as (base, gateway):
        yield Target(f"{base}/mcp/ev", gateway, request.param)


def _check_tool_result(
    name: str, result: types.CallToolResult, rec: Recorder, target: Target
) -> None:
    """What each tool must have produced, end to end through the gateway."""
    text = texts(result)
    if name == "simulate-research-query":
        # taskSupport "required": the upstream itself refuses a plain call; the
        # gateway relays that refusal unchanged.
        assert result.is_error and "task" in text.lower()
        return
    assert not result.is_error, (name, text)
    if name == "echo":
        assert text == "Echo: hello through the gateway"
    elif name == "get-annotated-message":
        kinds = [c.type for c in result.content]
        assert kinds[0] == "text" and "image" in kinds
        first = result.content[0]
        assert first.annotations is not None and first.annotations.priority is not None
    elif name == "get-env":
        env = json.loads(text)
        assert "PATH" in env
        if target.transport == "stdio":
            assert SECRET_ENV not in env, "the gateway leaked its environment to the upstream"
    elif name == "get-resource-links":
        links = [c for c in result.content if isinstance(c, types.ResourceLink)]
        assert len(links) == 2 and all(str(link.uri).startswith("demo://") for link in links)
    elif name == "get-resource-reference":
        embedded = [c for c in result.content if isinstance(c, types.EmbeddedResource)]
        assert embedded and str(embedded[0].resource.uri).endswith("/1")
    elif name == "get-structured-content":
        assert result.structured_content is not None
        assert {"temperature", "conditions", "humidity"} <= set(result.structured_content)
    elif name == "get-sum":
        assert "5" in text
    elif name == "get-tiny-image":
        images = [c for c in result.content if isinstance(c, types.ImageContent)]
        assert images and base64.b64decode(images[0].data).startswith(b"\x89PNG")
    elif name == "gzip-file-as-resource":
        embedded = [c for c in result.content if isinstance(c, types.EmbeddedResource)]
        blob = embedded[0].resource
        assert isinstance(blob, types.BlobResourceContents)
        assert gzip.decompress(base64.b64decode(blob.blob)) == b"hello, wardgate"
    elif name in ("toggle-simulated-logging", "toggle-subscriber-updates"):
        assert "Started" in text or "Stopped" in text
    elif name == "trigger-long-running-operation":
        assert "Long running operation completed" in text
    elif name == "get-roots-list":
        assert rec.roots_asked >= 1 and ROOT_URI in text
    elif name == "trigger-elicitation-request":
        assert "Ada Lovelace" in text
    elif name == "trigger-url-elicitation":
        assert "https://example.com/consent" in text
        assert any(isinstance(e, types.ElicitRequestURLParams) for e in rec.elicitations)
    elif name == "trigger-sampling-request":
        assert "sampled by the test client" in text and rec.sampling
    else:  # a tool added by a newer server-everything: it must at least answer
        assert result.content is not None


async def test_lists_and_calls_every_tool(target: Target) -> None:
    rec = Recorder()
    async with full_client(target.url, rec) as client:
        assert client.protocol_version == HANDSHAKE
        tools, _ = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        names = [t.name for t in tools]
        assert len(names) == len(set(names))
        assert set(names) >= EXPECTED_TOOLS, EXPECTED_TOOLS - set(names)
        for tool in tools:
            args = ARGS.get(tool.name, sample_args(tool.input_schema))
            result = await bounded(client.call_tool(tool.name, args))
            _check_tool_result(tool.name, result, rec, target)
        # The toggles started background timers upstream; switch them off again.
        for toggle in ("toggle-simulated-logging", "toggle-subscriber-updates"):
            assert "Stopped" in texts(await bounded(client.call_tool(toggle, {})))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_basic_list_and_call_both_modes(target: Target, mode: str) -> None:
    async with Client(target.url, mode=mode, read_timeout_seconds=30) as client:
        # server-everything only speaks the handshake era: "auto" probes server/discover
        # through the gateway, gets refused, and falls back.
        assert client.protocol_version in (HANDSHAKE, MODERN)
        if mode == "legacy":
            assert client.protocol_version == HANDSHAKE
        tools, _ = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        assert {"echo", "get-sum", "get-structured-content"} <= {t.name for t in tools}
        echo = await bounded(client.call_tool("echo", {"message": mode}))
        assert texts(echo) == f"Echo: {mode}"
        total = await bounded(client.call_tool("get-sum", {"a": 40, "b": 2}))
        assert "42" in texts(total)
        weather = await bounded(
            client.call_tool("get-structured-content", {"location": "New York"})
        )
        assert weather.structured_content is not None
        assert "temperature" in weather.structured_content
        # The TypeScript SDK answers an unknown tool with an error result, not -32602.
        try:
            missing = await bounded(client.call_tool("no-such-tool", {}))
        except MCPError:
            pass
        else:
            assert missing.is_error and "no-such-tool" in texts(missing)


async def test_resources(target: Target) -> None:
    async with Client(target.url, mode="legacy", read_timeout_seconds=30) as client:
        resources, pages = await list_all(lambda c: client.list_resources(cursor=c), "resources")
        uris = [str(r.uri) for r in resources]
        assert len(uris) == len(set(uris)) and pages >= 1
        assert any(u.startswith("demo://resource/static/document/") for u in uris)
        for uri in uris:
            read = await bounded(client.read_resource(uri))
            assert read.contents and str(read.contents[0].uri) == uri
            first = read.contents[0]
            assert isinstance(first, types.TextResourceContents) and first.text
        templates, _ = await list_all(
            lambda c: client.list_resource_templates(cursor=c), "resource_templates"
        )
        patterns = {t.uri_template for t in templates}
        assert {
            "demo://resource/dynamic/text/{resourceId}",
            "demo://resource/dynamic/blob/{resourceId}",
        } <= patterns
        text = await bounded(client.read_resource("demo://resource/dynamic/text/7"))
        assert isinstance(text.contents[0], types.TextResourceContents)
        assert "7" in text.contents[0].text
        blob = await bounded(client.read_resource("demo://resource/dynamic/blob/7"))
        assert isinstance(blob.contents[0], types.BlobResourceContents)
        assert base64.b64decode(blob.contents[0].blob)
        await bounded(client.subscribe_resource("demo://resource/dynamic/text/7"))
        await bounded(client.unsubscribe_resource("demo://resource/dynamic/text/7"))
        with pytest.raises(MCPError):
            await bounded(client.read_resource("demo://resource/no/such/thing"))


async def test_prompts(target: Target) -> None:
    async with Client(target.url, mode="legacy", read_timeout_seconds=30) as client:
        prompts, _ = await list_all(lambda c: client.list_prompts(cursor=c), "prompts")
        by_name = {p.name: p for p in prompts}
        assert {"simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"} <= set(
            by_name
        )
        simple = await bounded(client.get_prompt("simple-prompt"))
        assert texts(simple)
        args = await bounded(client.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"}))
        assert "Paris" in texts(args)
        team = await bounded(
            client.get_prompt("completable-prompt", {"department": "Engineering", "name": "Alice"})
        )
        assert "Alice" in texts(team)
        with_resource = await bounded(
            client.get_prompt("resource-prompt", {"resourceType": "Text", "resourceId": "2"})
        )
        assert any(isinstance(m.content, types.EmbeddedResource) for m in with_resource.messages)
        done = await bounded(
            client.complete(
                types.PromptReference(type="ref/prompt", name="completable-prompt"),
                {"name": "department", "value": "Eng"},
            )
        )
        assert "Engineering" in done.completion.values
        with pytest.raises(MCPError):
            await bounded(client.get_prompt("no-such-prompt"))


async def test_progress_notifications(target: Target) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(target.url, mode="legacy", read_timeout_seconds=30) as client:
        result = await bounded(
            client.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
        )
        assert "completed" in texts(result)
        assert seen == [(1, 3), (2, 3), (3, 3)]


async def _cancel_long_call(client: Client) -> None:
    """Start a 30 s operation, wait for its first progress, then cancel it."""
    started = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    call = asyncio.create_task(
        client.call_tool(
            "trigger-long-running-operation",
            {"duration": 30, "steps": 30},
            progress_callback=on_progress,
        )
    )
    try:
        await bounded(started.wait(), 15)
    finally:
        call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(call, 5)


async def test_cancellation_keeps_the_gateway_serving(target: Target) -> None:
    async with Client(target.url, mode="legacy", read_timeout_seconds=30) as client:
        await _cancel_long_call(client)
        # The session stays usable, and so does the gateway for other sessions.
        again = await bounded(client.call_tool("echo", {"message": "still here"}))
        assert texts(again) == "Echo: still here"
        async with Client(target.url, mode="legacy", read_timeout_seconds=30) as other:
            result = await bounded(other.call_tool("get-sum", {"a": 1, "b": 1}))
            assert "2" in texts(result)


async def test_cancelled_stdio_call_is_released() -> None:
    """Once the client cancels, the upstream will never answer (the spec says it SHOULD
    NOT): the gateway must stop waiting for that request, not hold it (and the
    client's POST stream) until the request timeout (300 s by default)."""
    config = {
        "upstreams": {"everything": everything_stdio()},
        "routes": {"ev": {"upstreams": ["everything"]}},
    }
    async with run_gateway(config) as (base, gateway):
        upstream = gateway.upstreams["everything"]
        assert isinstance(upstream, StdioUpstream)
        async with Client(f"{base}/mcp/ev", mode="legacy", read_timeout_seconds=30) as client:
            await _cancel_long_call(client)
            await bounded(client.call_tool("echo", {"message": "x"}))
            (session,) = upstream._sessions
            await eventually(lambda: not session._pending, 10)


async def test_sampling_round_trip(target: Target) -> None:
    rec = Recorder()
    async with full_client(target.url, rec) as client:
        result = await bounded(
            client.call_tool(
                "trigger-sampling-request", {"prompt": "What is MCP?", "maxTokens": 50}
            )
        )
    assert len(rec.sampling) == 1
    asked = rec.sampling[0]
    assert asked.max_tokens == 50
    content = asked.messages[0].content
    assert isinstance(content, types.TextContent) and "What is MCP?" in content.text
    # The tool got the client's answer back through the gateway.
    assert "sampled by the test client" in texts(result) and "test-model" in texts(result)


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_elicitation_round_trip(target: Target, action: str) -> None:
    rec = Recorder(elicit_action=action)
    async with full_client(target.url, rec) as client:
        result = await bounded(client.call_tool("trigger-elicitation-request", {}))
    assert len(rec.elicitations) == 1
    asked = rec.elicitations[0]
    assert isinstance(asked, types.ElicitRequestFormParams)
    assert "name" in asked.requested_schema["properties"]
    text = texts(result)
    if action == "accept":
        assert "Ada Lovelace" in text
    else:
        assert "decline" in text.lower() and "Ada Lovelace" not in text


async def test_roots_round_trip(target: Target) -> None:
    rec = Recorder()
    async with full_client(target.url, rec) as client:
        # server-everything asks for roots 350 ms after `initialized`, on the standalone
        # stream; a tool call that asks too before the client's GET stream is open races
        # inside the server (its first request is dropped by its transport and the tool
        # waits on it forever; the same without a gateway). Let the handshake settle.
        await eventually(lambda: rec.roots_asked >= 1, 15)
        result = await bounded(client.call_tool("get-roots-list", {}))
    assert rec.roots_asked >= 1
    assert ROOT_URI in texts(result) and "test-root" in texts(result)


async def test_logging_notifications(target: Target) -> None:
    rec = Recorder()
    async with full_client(target.url, rec) as client:
        await bounded(client.set_logging_level("debug"))
        started = await bounded(client.call_tool("toggle-simulated-logging", {}))
        assert "Started" in texts(started)
        try:
            # The first simulated message is sent at once ("Debug-level message", ...);
            # "Roots updated" info messages may come first.
            await eventually(lambda: any("level" in str(e.data).lower() for e in rec.logs), 15)
        finally:
            await bounded(client.call_tool("toggle-simulated-logging", {}))
    levels = {"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}
    assert rec.logs and all(entry.level in levels for entry in rec.logs)
    assert any("level" in str(entry.data).lower() for entry in rec.logs)
