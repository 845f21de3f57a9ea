"""Two principals, each with the official Python SDK client in the stateless era, race
on one shared process of an official-SDK stdio server. Their clients number requests
and progress tokens alike; each still sees only its own progress and its own answers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
from auth._local import LocalGateway, local_gateway
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .helpers import BOUND

SDK_SERVER = [sys.executable, str(Path(__file__).parent / "sdk_server.py")]


@asynccontextmanager
async def _client(g: LocalGateway, sub: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=g.bearer(sub=sub), timeout=30)
    transport = streamable_http_client(g.url("held"), http_client=http)
    async with http, Client(transport, mode="auto") as client:  # type: ignore[arg-type]
        assert client.protocol_version == "2026-07-28"
        yield client


async def test_two_sdk_clients_see_only_their_own_progress_and_answers() -> None:
    upstreams = {"held": {"transport": "stdio", "command": SDK_SERVER, "sandbox": "insecure-none"}}
    routes = {"held": {"upstreams": ["held"], "isolation": "shared"}}
    async with (
        local_gateway(upstreams, routes) as g,
        _client(g, "alice") as alice,
        _client(g, "bob") as bob,
    ):
        pids = {
            (await c.call_tool("pid", {})).content[0].text  # type: ignore[union-attr]
            for c in (alice, bob)
        }
        assert len(pids) == 1  # one process serves both principals
        seen: dict[str, list[str | None]] = {"alice": [], "bob": []}
        started = {"alice": asyncio.Event(), "bob": asyncio.Event()}

        def progress(who: str):  # type: ignore[no-untyped-def]
            async def record(value: float, total: float | None, message: str | None) -> None:
                seen[who].append(message)
                started[who].set()

            return record

        a = asyncio.create_task(
            alice.call_tool("slow", {"tag": "a"}, progress_callback=progress("alice"))
        )
        b = asyncio.create_task(
            bob.call_tool("slow", {"tag": "b"}, progress_callback=progress("bob"))
        )
        await asyncio.wait_for(
            asyncio.gather(started["alice"].wait(), started["bob"].wait()), BOUND
        )
        await alice.call_tool("release", {"tag": "b"})
        await bob.call_tool("release", {"tag": "a"})
        result_a, result_b = await asyncio.wait_for(asyncio.gather(a, b), BOUND)
        assert result_a.content[0].text == "done a"  # type: ignore[union-attr]
        assert result_b.content[0].text == "done b"  # type: ignore[union-attr]
        assert seen == {"alice": ["a"], "bob": ["b"]}
