"""Session caps are checked before anything is opened upstream, per principal and in total,
and a refusal tells the caller nothing about other principals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sessions._handshake import CountingUpstream, call_echo, handshake, principal

from wardgate.errors import UpstreamError
from wardgate.routing.sessions import SessionStore, TooManySessions
from wardgate.upstream.http import HttpUpstream


@pytest.fixture
async def upstream(demo_http_upstream: str) -> AsyncIterator[CountingUpstream]:
    up = CountingUpstream("demo", demo_http_upstream)
    await up.start()
    try:
        yield up
    finally:
        await up.aclose()


async def test_one_principal_is_refused_at_its_cap_before_opening_upstream(
    upstream: CountingUpstream,
) -> None:
    store = SessionStore(max_sessions=100, max_per_principal=3)
    alice, bob = principal("alice").binding_key, principal("bob").binding_key
    mine = [await handshake(store, upstream, alice) for _ in range(3)]
    opened = upstream.opened

    refusals = []
    for _ in range(20):  # the flood
        with pytest.raises(TooManySessions) as refused:
            await handshake(store, upstream, alice)
        refusals.append(refused.value)
    assert upstream.opened == opened, "a refused handshake opened an upstream session"
    assert store.held_by(alice) == 3
    assert {r.http_status for r in refusals} == {503}
    assert {r.retry_after for r in refusals} == {60}

    # Another principal still gets a session, and alice's sessions still serve calls.
    theirs = await handshake(store, upstream, bob)
    assert store.held_by(bob) == 1
    answer = await call_echo(mine[0], "still here")
    assert answer["result"]["content"][0]["text"] == "still here"
    answer = await call_echo(theirs, "bob too")
    assert answer["result"]["content"][0]["text"] == "bob too"
    await store.aclose()


async def test_the_same_subject_in_another_tenant_is_another_principal(
    upstream: CountingUpstream,
) -> None:
    store = SessionStore(max_per_principal=1)
    await handshake(store, upstream, principal("alice", "t1").binding_key)
    with pytest.raises(TooManySessions):
        await handshake(store, upstream, principal("alice", "t1").binding_key)
    await handshake(store, upstream, principal("alice", "t2").binding_key)
    assert len(store) == 2
    await store.aclose()


async def test_the_global_cap_holds_across_principals(upstream: CountingUpstream) -> None:
    store = SessionStore(max_sessions=4, max_per_principal=10)
    first = [await handshake(store, upstream, principal(f"p{i}").binding_key) for i in range(4)]
    opened = upstream.opened
    for i in range(4, 12):
        with pytest.raises(TooManySessions) as refused:
            await handshake(store, upstream, principal(f"p{i}").binding_key)
        # The same answer as a per-principal refusal: nothing about who holds the places.
        assert refused.value.code == "wardgate.too_many_sessions"
        assert refused.value.http_status == 503
    assert upstream.opened == opened and len(store) == 4

    # A place freed is a place taken again.
    gone = store.pop(first[0].id)
    assert gone is not None
    await gone.close()
    await handshake(store, upstream, principal("late").binding_key)
    assert len(store) == 4
    answer = await call_echo(first[1], "ok")
    assert answer["result"]["content"][0]["text"] == "ok"
    await store.aclose()


async def test_a_failed_handshake_gives_its_place_back(upstream: CountingUpstream) -> None:
    store = SessionStore(max_per_principal=1)
    alice = principal("alice").binding_key
    dead = HttpUpstream("dead", "http://127.0.0.1:9/mcp", connect_timeout=2)
    await dead.start()
    try:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await handshake(store, dead, alice)
            assert store.held_by(alice) == 0
    finally:
        await dead.aclose()
    session = await handshake(store, upstream, alice)
    assert store.get(session.id) is session
    await store.aclose()


async def test_a_session_committed_in_a_failing_block_is_removed_and_closed(
    upstream: CountingUpstream, demo_http_upstream: str
) -> None:
    store = SessionStore(max_per_principal=1)
    alice = principal("alice").binding_key
    with pytest.raises(RuntimeError):
        async with store.reserve(alice) as slot:
            session = await handshake(SessionStore(), upstream, alice)
            slot.commit(session)
            raise RuntimeError("the reply could not be sent")
    assert len(store) == 0 and store.held_by(alice) == 0
    # Its upstream session was ended (DELETE): the upstream no longer knows the id.
    up_id = session.upstreams[0].session_id  # type: ignore[attr-defined]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            demo_http_upstream,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={
                "mcp-session-id": up_id,
                "mcp-protocol-version": "2025-11-25",
                "accept": "application/json, text/event-stream",
            },
        ) as resp,
    ):
        assert resp.status == 404


async def test_a_slot_holds_only_its_own_principals_session(upstream: CountingUpstream) -> None:
    store = SessionStore()
    bobs = await handshake(SessionStore(), upstream, principal("bob").binding_key)
    with pytest.raises(ValueError):
        async with store.reserve(principal("alice").binding_key) as slot:
            slot.commit(bobs)
    assert len(store) == 0 and store.held_by(principal("alice").binding_key) == 0
    await bobs.close()
