"""One federated route in front of three real servers: server-everything (TypeScript,
stdio), mcp-server-time (PyPI, stdio) and the bundled demo server (stdio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from mcp import Client, MCPError, types
from upstream_helpers import (
    HANDSHAKE,
    MODERN,
    Recorder,
    bounded,
    demo_stdio,
    everything_stdio,
    full_client,
    list_all,
    needs_node,
    texts,
    time_stdio,
)

from support.servers import run_gateway

pytestmark = [needs_node, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

PREFIXES = ("ev", "time", "demo")
EV_DOCS = {
    f"demo://resource/static/document/{name}.md"
    for name in (
        "architecture",
        "extension",
        "features",
        "how-it-works",
        "instructions",
        "startup",
        "structure",
    )
}


@pytest.fixture
async def fed() -> AsyncIterator[str]:
    config = {
        "upstreams": {"ev": everything_stdio(), "time": time_stdio(), "demo": demo_stdio()},
        "routes": {
            "fed": {"upstreams": list(PREFIXES)},
            # Only servers that speak 2026-07-28 (both on the 2.x Python SDK).
            "modern": {"upstreams": ["time", "demo"]},
        },
    }
    async with run_gateway(config) as (base, _):
        yield base


async def test_tools_are_prefixed_and_calls_reach_the_right_upstream(fed: str) -> None:
    rec = Recorder()
    async with full_client(f"{fed}/mcp/fed", rec) as client:
        assert client.protocol_version == HANDSHAKE
        tools, pages = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        names = [t.name for t in tools]
        assert len(names) == len(set(names))
        assert all(n.split("__", 1)[0] in PREFIXES and "__" in n for n in names), names
        assert {n for n in names if n.startswith("time__")} == {
            "time__get_current_time",
            "time__convert_time",
        }
        assert {n for n in names if n.startswith("demo__")} == {
            "demo__echo",
            "demo__add",
            "demo__utc_now",
            "demo__delete_everything",
        }
        assert {"ev__echo", "ev__get-sum", "ev__trigger-sampling-request"} <= set(names)
        assert pages >= 1

        # Same bare name "echo" on two upstreams: the prefix decides.
        ev_echo = await bounded(client.call_tool("ev__echo", {"message": "to ev"}))
        assert texts(ev_echo) == "Echo: to ev"
        demo_echo = await bounded(client.call_tool("demo__echo", {"text": "to demo"}))
        assert texts(demo_echo) == "to demo"
        total = await bounded(client.call_tool("ev__get-sum", {"a": 2, "b": 5}))
        assert "7" in texts(total)
        added = await bounded(client.call_tool("demo__add", {"a": 2, "b": 5}))
        assert texts(added) == "7.0"
        now = await bounded(client.call_tool("time__get_current_time", {"timezone": "UTC"}))
        assert now.structured_content is not None and now.structured_content["timezone"] == "UTC"
        converted = await bounded(
            client.call_tool(
                "time__convert_time",
                {"source_timezone": "UTC", "time": "08:30", "target_timezone": "Asia/Kolkata"},
            )
        )
        assert converted.structured_content is not None
        assert converted.structured_content["time_difference"] == "+5.5h"

        for bad in ("echo", "nope__echo", "ev__"):
            with pytest.raises(MCPError) as refused:
                await bounded(client.call_tool(bad, {}))
            assert refused.value.error.code == -32602


async def test_prompts_are_merged(fed: str) -> None:
    async with Client(f"{fed}/mcp/fed", mode="legacy", read_timeout_seconds=30) as client:
        prompts, _ = await list_all(lambda c: client.list_prompts(cursor=c), "prompts")
        names = {p.name for p in prompts}
        assert {
            "ev__simple-prompt",
            "ev__args-prompt",
            "ev__completable-prompt",
            "ev__resource-prompt",
            "demo__greet",
        } == names
        greet = await bounded(client.get_prompt("demo__greet", {"name": "Grace"}))
        assert "Grace" in texts(greet)
        weather = await bounded(client.get_prompt("ev__args-prompt", {"city": "Lyon"}))
        assert "Lyon" in texts(weather)
        done = await bounded(
            client.complete(
                types.PromptReference(type="ref/prompt", name="ev__completable-prompt"),
                {"name": "department", "value": "Mar"},
            )
        )
        assert "Marketing" in done.completion.values
        with pytest.raises(MCPError):
            await bounded(client.get_prompt("time__anything"))


async def test_resource_pagination_across_upstreams(fed: str) -> None:
    async with Client(f"{fed}/mcp/fed", mode="legacy", read_timeout_seconds=30) as client:
        resources, pages = await list_all(lambda c: client.list_resources(cursor=c), "resources")
        uris = [str(r.uri) for r in resources]
        assert len(uris) == len(set(uris))
        # ev's documents and the demo's readme; the time server has no resources.
        assert set(uris) == {*EV_DOCS, "demo://readme"}
        # The first page holds every member's first page; none of these pages further.
        assert pages == 1
        templates, _ = await list_all(
            lambda c: client.list_resource_templates(cursor=c), "resource_templates"
        )
        assert {t.uri_template for t in templates} == {
            "demo://resource/dynamic/text/{resourceId}",
            "demo://resource/dynamic/blob/{resourceId}",
        }
        with pytest.raises(MCPError) as refused:
            await bounded(client.list_resources(cursor="not-a-cursor"))
        assert refused.value.error.code == -32602


async def test_resources_are_readable_after_listing(fed: str) -> None:
    async with Client(f"{fed}/mcp/fed", mode="legacy", read_timeout_seconds=30) as client:
        await list_all(lambda c: client.list_resources(cursor=c), "resources")
        await list_all(lambda c: client.list_resource_templates(cursor=c), "resource_templates")
        readme = await bounded(client.read_resource("demo://readme"))
        first = readme.contents[0]
        assert isinstance(first, types.TextResourceContents) and "demo MCP server" in first.text
        doc = await bounded(client.read_resource("demo://resource/static/document/features.md"))
        assert doc.contents
        dynamic = await bounded(client.read_resource("demo://resource/dynamic/text/3"))
        assert dynamic.contents


async def test_server_to_client_requests_and_progress(fed: str) -> None:
    rec = Recorder()
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with full_client(f"{fed}/mcp/fed", rec) as client:
        await list_all(lambda c: client.list_tools(cursor=c), "tools")
        sampled = await bounded(client.call_tool("ev__trigger-sampling-request", {"prompt": "hi"}))
        assert "sampled by the test client" in texts(sampled) and len(rec.sampling) == 1
        elicited = await bounded(client.call_tool("ev__trigger-elicitation-request", {}))
        assert "Ada Lovelace" in texts(elicited) and len(rec.elicitations) == 1
        slow = await bounded(
            client.call_tool(
                "ev__trigger-long-running-operation",
                {"duration": 1, "steps": 2},
                progress_callback=on_progress,
            )
        )
        assert "completed" in texts(slow) and seen == [1, 2]
        # Concurrent calls to different upstreams do not cross.
        a, b = await bounded(
            asyncio.gather(
                client.call_tool("ev__echo", {"message": "one"}),
                client.call_tool("demo__echo", {"text": "two"}),
            )
        )
        assert texts(a) == "Echo: one" and texts(b) == "two"


async def test_advertised_capabilities_are_served(fed: str) -> None:
    """Whatever the merged initialize result offers, the federated route must answer."""
    async with Client(f"{fed}/mcp/fed", mode="legacy", read_timeout_seconds=30) as client:
        caps = client.server_capabilities
        assert caps is not None and caps.tools is not None and caps.prompts is not None
        if caps.tasks is not None and caps.tasks.list is not None:
            listed = await bounded(
                client.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
            )
            assert listed.tasks == []


async def test_modern_era_federation(fed: str) -> None:
    """A federated route whose upstreams all speak 2026-07-28, driven in "auto" mode."""
    async with Client(f"{fed}/mcp/modern", mode="auto", read_timeout_seconds=30) as client:
        assert client.protocol_version == MODERN
        tools, _ = await list_all(lambda c: client.list_tools(cursor=c), "tools")
        assert {"time__get_current_time", "demo__add"} <= {t.name for t in tools}
        added = await bounded(client.call_tool("demo__add", {"a": 1, "b": 2}))
        assert texts(added) == "3.0"
        now = await bounded(client.call_tool("time__get_current_time", {"timezone": "UTC"}))
        assert now.structured_content is not None
        resources, _ = await list_all(lambda c: client.list_resources(cursor=c), "resources")
        assert {str(r.uri) for r in resources} == {"demo://readme"}
        prompts, _ = await list_all(lambda c: client.list_prompts(cursor=c), "prompts")
        assert {p.name for p in prompts} == {"demo__greet"}


async def test_auto_mode_with_a_handshake_only_upstream(fed: str) -> None:
    """server-everything speaks only the handshake era; the federated route still
    negotiates 2026-07-28 (its discover fan-out skips the upstream that failed), so
    every answer from that upstream must be valid in the era the client got."""
    async with Client(f"{fed}/mcp/fed", mode="auto", read_timeout_seconds=30) as client:
        assert client.protocol_version in (HANDSHAKE, MODERN)
        echo = await bounded(client.call_tool("ev__echo", {"message": "modern"}))
        assert texts(echo) == "Echo: modern"
        now = await bounded(client.call_tool("time__get_current_time", {"timezone": "UTC"}))
        assert now.structured_content is not None
