"""subscriptions/listen (2026-07-28) on a federated route: one stream merged from the
members' streams, one acknowledgement first, the client's subscription id on every
notification, and each resource subscription held by the one member that owns it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import aiohttp
import orjson
import pytest
from federation_helpers import MEMBER

from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway, spawn_http_server

SUB_ID = "io.modelcontextprotocol/subscriptionId"
STEP = 15.0


@pytest.fixture(scope="module")
def members() -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        for name in ("a", "b"):
            port = free_port()
            argv = [sys.executable, str(MEMBER), "--name", name, "--listen"]
            argv += ["--resources", f"{name}://doc", "--port", str(port)]
            stack.enter_context(spawn_http_server(argv, port))
            urls[name] = f"http://127.0.0.1:{port}/mcp"
        yield urls


@pytest.fixture
async def fed(members: dict[str, str]) -> AsyncIterator[str]:
    config = {
        "upstreams": {n: {"transport": "http", "url": u} for n, u in members.items()},
        "routes": {"fed": {"upstreams": ["a", "b"]}},
    }
    async with run_gateway(config) as (base, _):
        yield f"{base}/mcp/fed"


async def _call(url: str, tool: str, arguments: dict[str, Any], request_id: int) -> None:
    body = modern_body("tools/call", {"name": tool, "arguments": arguments}, request_id)
    status, _, answer = await post(url, body, modern_headers("tools/call", tool))
    assert status == 200 and "result" in answer, answer


async def _read_stream(resp: aiohttp.ClientResponse, into: asyncio.Queue[dict[str, Any]]) -> None:
    async for line in resp.content:
        text = line.decode().strip()
        if text.startswith("data:") and text[5:].strip():
            await into.put(orjson.loads(text[5:]))


async def test_one_merged_stream_carries_every_members_notifications(fed: str) -> None:
    status, _, discovered = await post(
        fed, modern_body("server/discover"), modern_headers("server/discover")
    )
    assert status == 200
    caps = discovered["result"]["capabilities"]
    assert caps["tools"]["listChanged"] is True and caps["resources"]["subscribe"] is True

    wanted = {
        "toolsListChanged": True,
        "resourceSubscriptions": ["a://doc", "b://doc", "nobody://serves-this"],
    }
    body = modern_body("subscriptions/listen", {"notifications": wanted}, 41)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            fed, data=orjson.dumps(body), headers=modern_headers("subscriptions/listen")
        ) as resp,
    ):
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        reader = asyncio.create_task(_read_stream(resp, queue))
        try:
            ack = await asyncio.wait_for(queue.get(), STEP)
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"]["_meta"][SUB_ID] == 41
            # What the members accepted, merged; the URI no member serves is not accepted.
            assert ack["params"]["notifications"] == {
                "toolsListChanged": True,
                "resourceSubscriptions": ["a://doc", "b://doc"],
            }

            # a was subscribed to its own resource only: its update of b's URI is not
            # delivered (a's later update of its own comes on the same upstream stream).
            await _call(fed, "a__announce", {"uri": "b://doc"}, 2)
            await _call(fed, "a__announce", {"uri": "a://doc"}, 3)
            updated = await asyncio.wait_for(queue.get(), STEP)
            assert updated["method"] == "notifications/resources/updated"
            assert updated["params"]["uri"] == "a://doc"
            assert updated["params"]["_meta"][SUB_ID] == 41

            await _call(fed, "b__announce", {}, 4)
            changed = await asyncio.wait_for(queue.get(), STEP)
            assert changed["method"] == "notifications/tools/list_changed"
            assert changed["params"]["_meta"][SUB_ID] == 41

            await _call(fed, "b__announce", {"uri": "b://doc"}, 5)
            updated = await asyncio.wait_for(queue.get(), STEP)
            assert updated["params"]["uri"] == "b://doc"
            assert queue.empty()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
