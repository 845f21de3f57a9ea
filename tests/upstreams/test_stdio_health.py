"""A stdio server that is alive but stops answering, or stops reading its stdin, is
found and restarted: the calls in flight get an error, never a hang."""

from __future__ import annotations

import asyncio

import pytest
from isolation.helpers import answer, call, eventually, key, raw_upstream, rest, started, text_of

from wardgate.errors import UpstreamError, UpstreamTimeout


async def test_a_server_that_stops_answering_is_restarted() -> None:
    async with started(raw_upstream(request_timeout=2, health_timeout=0.3)) as up:
        alice = up.shared_session(key("alice"))
        bob = up.shared_session(key("bob"))
        before = int(text_of(await answer(alice, 1, "pid")))
        frozen = await call(alice, 2, "freeze")
        with pytest.raises(UpstreamTimeout):
            await rest(frozen)
        # Bob's call reaches the frozen server while the ping after Alice's timeout goes
        # unanswered: the process is killed and Bob's call fails then, well before its
        # own timeout, with the upstream error rather than a timeout.
        loop = asyncio.get_running_loop()
        start = loop.time()
        in_flight = await call(bob, 1, "echo", text="b")
        with pytest.raises(UpstreamError) as failed:
            await rest(in_flight)
        assert failed.value.code == "wardgate.upstream"
        assert loop.time() - start < 1.5
        after = int(text_of(await answer(alice, 3, "pid")))
        assert after != before
        assert up._pool[""].restarts == 1


async def test_a_slow_but_answering_server_is_not_restarted() -> None:
    async with started(raw_upstream(request_timeout=0.5, health_timeout=2)) as up:
        alice = up.shared_session(key("alice"))
        before = int(text_of(await answer(alice, 1, "pid")))
        with pytest.raises(UpstreamTimeout):
            await rest(await call(alice, 2, "wait", tag="slow"))
        session = up._pool[""]
        assert session._health.task is not None
        await asyncio.wait_for(session._health.task, 5)  # the ping was answered
        assert int(text_of(await answer(alice, 3, "pid"))) == before
        assert (await answer(alice, 4, "status"))["result"]["cancelled"] == ["slow"]


async def test_a_server_that_stops_reading_stdin_is_restarted() -> None:
    async with started(raw_upstream(request_timeout=30, health_timeout=0.5)) as up:
        alice = up.shared_session(key("alice"))
        before = int(text_of(await answer(alice, 1, "pid")))
        assert text_of(await answer(alice, 2, "deaf")) == "deaf"
        big = "x" * (4 * 1024 * 1024)  # more than a pipe holds: the write cannot drain
        with pytest.raises(UpstreamError):
            await asyncio.wait_for(alice.request({**_echo(3, big)}, {}), 10)
        session = up._pool[""]
        await eventually(lambda: not session._running())
        assert int(text_of(await answer(alice, 4, "pid"))) != before


def _echo(request_id: int, text: str) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}},
    }
