"""A legacy HTTP+SSE upstream shares one stream among every caller of a route: the
callers' request ids are kept apart on it as on a shared stdio process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from isolation.helpers import cancel, key, rest, text_of, tool

from support.servers import free_port, spawn_http_server
from wardgate.upstream.sse_client import SseUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[SseUpstream]:
    port = free_port()
    argv = [sys.executable, "-m", "wardgate.demo.server", "--sse", str(port)]
    with spawn_http_server(argv, port):
        up = SseUpstream("old", f"http://127.0.0.1:{port}/sse")
        await up.start()
        try:
            setup = up.shared_session(key("setup"))
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2024-11-05",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            }
            await rest(await setup.request(init, {}))
            await setup.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})
            yield up
        finally:
            await up.aclose()


async def test_equal_ids_from_two_callers_get_their_own_answers(upstream: SseUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    replies = [
        await alice.request(tool(1, "echo", text="from alice"), {}),
        await bob.request(tool(1, "echo", text="from bob"), {}),
    ]
    a, b = await asyncio.gather(*(rest(r) for r in replies))
    assert (a[-1]["id"], text_of(a[-1])) == (1, "from alice")
    assert (b[-1]["id"], text_of(b[-1])) == (1, "from bob")
    # Nothing of Alice's is in flight: Bob's cancel naming 1 reaches nobody.
    assert await bob.post(cancel(1), {}) == 202
    assert await alice.listen({}) is None  # no standalone stream on a shared channel
