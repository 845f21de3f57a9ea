"""Two principals on one shared stdio process: ids, cancellations, progress and
notifications stay each caller's own (channel level, a real process, no gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wardgate.errors import ProtocolError
from wardgate.upstream.stdio import StdioUpstream

from .helpers import (
    BOUND,
    answer,
    call,
    cancel,
    eventually,
    key,
    next_event,
    raw_upstream,
    rest,
    started,
    status,
    text_of,
)


@pytest.fixture
async def upstream() -> AsyncIterator[StdioUpstream]:
    async with started(raw_upstream(request_timeout=30)) as up:
        yield up


async def test_same_ids_and_progress_tokens_never_cross(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    a = await call(alice, 1, "wait", token="tok", tag="a")
    b = await call(bob, 1, "wait", token="tok", tag="b")
    progress_a, progress_b = await next_event(a), await next_event(b)
    # Each sees its own token back, carrying its own call's progress.
    assert progress_a.message is not None and progress_b.message is not None
    assert progress_a.message["params"] == {"progressToken": "tok", "progress": 1, "message": "a"}
    assert progress_b.message["params"] == {"progressToken": "tok", "progress": 1, "message": "b"}
    await answer(alice, 2, "release", tag="b")
    await answer(alice, 3, "release", tag="a")
    (final_a,) = await rest(a)
    (final_b,) = await rest(b)
    assert (final_a["id"], text_of(final_a)) == (1, "released a")
    assert (final_b["id"], text_of(final_b)) == (1, "released b")


async def test_a_caller_cancels_only_its_own_call(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    mallory = upstream.shared_session(key("mallory"))
    a = await call(alice, 7, "wait", tag="a")
    b = await call(bob, 7, "wait", tag="b")
    assert (await status(mallory))["held"] == ["a", "b"]
    # Mallory names id 7, and ids that may be upstream ids: none is hers, nothing happens.
    for request_id in (7, 1, 2, 3):
        assert await mallory.post(cancel(request_id), {}) == 202
    assert (await status(mallory))["cancels"] == []
    # Bob cancels his 7: only his call stops, and it ends at once.
    assert await bob.post(cancel(7), {}) == 202
    assert await rest(b) == []
    seen = await status(alice)
    assert seen["held"] == ["a"] and seen["cancelled"] == ["b"] and len(seen["cancels"]) == 1
    assert seen["cancels"] != [7]  # the server saw Bob's upstream id, never his own
    await answer(bob, 8, "release", tag="a")
    (final_a,) = await rest(a)
    assert text_of(final_a) == "released a"


async def test_unrelated_notifications_reach_no_one_on_a_shared_process(
    upstream: StdioUpstream,
) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    b = await call(bob, 1, "wait", tag="b")
    # Alice's call is answered, then the server says something about nothing in flight
    # but Bob's call: the old "only request in flight" rule gave it to Bob.
    assert text_of(await answer(alice, 1, "notify")) == "notified"
    await eventually(lambda: upstream._pool[""].dropped == 1)
    await answer(alice, 2, "release", tag="b")
    messages = await rest(b)
    assert [m.get("method") for m in messages] == [None]  # the response only
    assert text_of(messages[0]) == "released b"


async def test_server_requests_on_a_shared_process_are_refused_upstream(
    upstream: StdioUpstream,
) -> None:
    alice = upstream.shared_session(key("alice"))
    messages = await rest(await call(alice, 1, "ask"))
    assert [m.get("method") for m in messages] == [None]
    await eventually(lambda: upstream._pool[""].dropped == 1)
    # Nobody was given the server's request, so nobody may answer it.
    answer_it = {"jsonrpc": "2.0", "id": "srv-1", "result": {"roots": []}}
    assert await alice.post(answer_it, {}) == 202


async def test_duplicate_ids_from_one_caller_on_a_shared_process_both_answered(
    upstream: StdioUpstream,
) -> None:
    alice = upstream.shared_session(key("alice"))
    first = await call(alice, 5, "wait", tag="one")
    second = await call(alice, 5, "wait", tag="two")
    # A cancel naming 5 cannot say which: it is ignored, neither call stops.
    assert await alice.post(cancel(5), {}) == 202
    await answer(alice, 6, "release", tag="two")
    await answer(alice, 7, "release", tag="one")
    (one,) = await rest(first)
    (two,) = await rest(second)
    assert (one["id"], text_of(one)) == (5, "released one")
    assert (two["id"], text_of(two)) == (5, "released two")
    assert (await status(alice))["cancels"] == []


async def test_duplicate_id_in_flight_on_a_session_is_refused(upstream: StdioUpstream) -> None:
    session = await upstream.open_session()
    try:
        first = await call(session, 5, "wait", tag="one")
        second = await call(session, 5, "echo", text="x")
        with pytest.raises(ProtocolError):
            await rest(second)
        assert (await status(session))["held"] == ["one"]
        await answer(session, 6, "release", tag="one")
        (one,) = await rest(first)
        assert (one["id"], text_of(one)) == (5, "released one")
        # Once the first is over, the id is free again.
        assert text_of(await answer(session, 5, "echo", text="again")) == "again"
    finally:
        await session.close()


async def test_no_cancel_follows_an_answered_call(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    for i in range(5):
        reply = await call(alice, i, "echo", text=str(i))
        response = await next_event(reply)
        assert response.is_response
        await reply.aclose()  # the relay stops reading once it has the response
    assert (await status(alice))["cancels"] == []


async def test_a_caller_that_goes_away_cancels_its_call_upstream(upstream: StdioUpstream) -> None:
    alice = upstream.shared_session(key("alice"))
    bob = upstream.shared_session(key("bob"))
    a = await call(alice, 1, "wait", tag="a")
    b = await call(bob, 1, "wait", tag="b")
    await a.aclose()  # never started reading: the call still ends

    async def cancelled() -> list[str]:
        return list((await status(bob))["cancelled"])

    async def wait_cancelled() -> None:
        while await cancelled() != ["a"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait_cancelled(), BOUND)
    assert key("alice").split("\n")[1] not in upstream._pool[""]._tables
    await answer(bob, 2, "release", tag="b")
    (final_b,) = await rest(b)
    assert text_of(final_b) == "released b"


async def test_a_server_request_is_answered_only_by_the_caller_it_was_given_to(
    upstream: StdioUpstream,
) -> None:
    session = await upstream.open_session()
    try:
        messages = await rest(await call(session, 1, "ask"))
        asked = [m for m in messages if m.get("method") == "roots/list"]
        assert [m["id"] for m in asked] == ["srv-1"]
        roots = {"jsonrpc": "2.0", "result": {"roots": []}}
        # Not given to anyone: stopped here. Given: passed on, once.
        for server_id in ("srv-2", "srv-1", "srv-1"):
            assert await session.post({**roots, "id": server_id}, {}) == 202
        assert (await status(session))["answers"] == [["srv-1", "result"]]
        # On a shared process nobody is given a server request, so nobody answers one:
        # the gateway refuses it upstream so that it never waits.
        alice = upstream.shared_session(key("alice"))
        await rest(await call(alice, 2, "ask"))
        assert await alice.post({**roots, "id": "srv-1"}, {}) == 202
        assert (await status(alice))["answers"] == [["srv-1", "error"]]
    finally:
        await session.close()
