"""Two principals racing on one shared process of an official-SDK stdio server, in the
stateless (2026-07-28) era, with the same request ids and progress tokens."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wardgate.upstream.sandbox import PlainProcessRunner
from wardgate.upstream.seam import UpstreamSession
from wardgate.upstream.stdio import StdioUpstream

from .helpers import cancel, key, next_event, rest, started, text_of

SDK_SERVER = [sys.executable, str(Path(__file__).parent / "sdk_server.py")]
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _call(request_id: int, name: str, token: Any = None, **arguments: Any) -> dict[str, Any]:
    meta = dict(_META)
    if token is not None:
        meta["progressToken"] = token
    params = {"name": name, "arguments": arguments, "_meta": meta}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def _answer(session: UpstreamSession, request_id: int, name: str, **kw: Any) -> str:
    messages = await rest(await session.request(_call(request_id, name, **kw), {}))
    return text_of(messages[-1])


@pytest.fixture
async def upstream() -> AsyncIterator[StdioUpstream]:
    async with started(StdioUpstream("sdk", SDK_SERVER, PlainProcessRunner())) as up:
        yield up


async def test_progress_and_answers_stay_with_their_principal(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    assert await _answer(alice, 9, "pid") == await _answer(bob, 9, "pid")  # one process
    a = await alice.request(_call(1, "slow", "tok", tag="a"), {})
    b = await bob.request(_call(1, "slow", "tok", tag="b"), {})
    pa, pb = (await next_event(a)).message, (await next_event(b)).message
    assert pa is not None and pb is not None
    assert (pa["params"]["progressToken"], pa["params"]["message"]) == ("tok", "a")
    assert (pb["params"]["progressToken"], pb["params"]["message"]) == ("tok", "b")
    await _answer(alice, 2, "release", tag="b")
    await _answer(bob, 2, "release", tag="a")
    (final_a,) = await rest(a)
    (final_b,) = await rest(b)
    assert (final_a["id"], text_of(final_a)) == (1, "done a")
    assert (final_b["id"], text_of(final_b)) == (1, "done b")


async def test_a_principal_cancels_only_its_own_call(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    a = await alice.request(_call(1, "slow", "tok", tag="a"), {})
    b = await bob.request(_call(1, "slow", "tok", tag="b"), {})
    await next_event(a)
    await next_event(b)
    assert await bob.post(cancel(1), {}) == 202
    assert await rest(b) == []  # Bob's call is over for Bob
    await _answer(bob, 2, "release", tag="a")
    (final_a,) = await rest(a)
    assert (final_a["id"], text_of(final_a)) == (1, "done a")  # Alice's call lived on
