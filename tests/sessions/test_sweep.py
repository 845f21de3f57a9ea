"""Idle sessions and legacy SSE streams are swept on a timer, not only when looked up."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from wardgate.routing.sessions import GatewaySession, SessionStore, TooManySessions
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import JsonObject

IDLE = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ticks:
    """A sleep the test drives: each tick lets the sweeper run one round."""

    def __init__(self) -> None:
        self.asked: asyncio.Queue[float] = asyncio.Queue()
        self._go = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.asked.put_nowait(seconds)
        await self._go.wait()
        self._go.clear()

    async def tick(self) -> None:
        """Let one round run, and wait (bounded) until the sweeper sleeps again."""
        self._go.set()
        await asyncio.wait_for(self.asked.get(), 5)


class FakeUpstreamSession:
    """Records whether it was closed (a unit test of the store alone)."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    async def request(self, message: JsonObject, headers: Mapping[str, str]) -> Reply:
        raise NotImplementedError

    async def post(self, message: JsonObject, headers: Mapping[str, str]) -> int:
        return 202

    async def listen(self, headers: Mapping[str, str]) -> Reply | None:
        return None

    async def close(self) -> None:
        self.closed.set()


async def _open(store: SessionStore, subject: str) -> tuple[GatewaySession, FakeUpstreamSession]:
    owner = (None, None, None, subject)
    up = FakeUpstreamSession()
    async with store.reserve(owner) as slot:
        session = GatewaySession(store.new_id(), "r", {0: up}, {0: "v"}, "v", owner)
        slot.commit(session)
    return session, up


async def test_the_timer_sweeps_idle_sessions_and_closes_their_upstreams() -> None:
    clock, ticks = Clock(), Ticks()
    store = SessionStore(
        idle_timeout=IDLE, sweep_interval=30, max_per_principal=2, clock=clock, sleep=ticks.sleep
    )
    await store.start()
    assert await asyncio.wait_for(ticks.asked.get(), 5) == 30
    idle, idle_up = await _open(store, "alice")
    used, used_up = await _open(store, "alice")

    clock.now += IDLE * 0.75
    assert store.get(used.id) is used  # a legitimate call restarts its timer
    clock.now += IDLE * 0.5
    await ticks.tick()

    assert store.get(idle.id) is None and idle_up.closed.is_set()
    assert store.get(used.id) is used and not used_up.closed.is_set()
    assert store.held_by(("", None, None, "alice")) == 0  # another key: nothing held
    assert store.held_by((None, None, None, "alice")) == 1  # the swept place is free again
    await _open(store, "alice")

    await store.aclose()
    assert used_up.closed.is_set()


async def test_nothing_is_swept_before_its_time() -> None:
    clock, ticks = Clock(), Ticks()
    store = SessionStore(idle_timeout=IDLE, clock=clock, sleep=ticks.sleep)
    await store.start()
    await asyncio.wait_for(ticks.asked.get(), 5)
    session, up = await _open(store, "alice")
    clock.now += IDLE
    await ticks.tick()
    assert store.get(session.id) is session and not up.closed.is_set()
    await store.aclose()


async def test_idle_places_are_reclaimed_before_a_refusal() -> None:
    clock = Clock()
    store = SessionStore(idle_timeout=IDLE, max_per_principal=1, clock=clock)
    _, old_up = await _open(store, "alice")
    clock.now += IDLE + 1
    await _open(store, "alice")  # no sweeper running: the reservation reclaims the idle one
    assert old_up.closed.is_set() and len(store) == 1
    await store.aclose()


async def test_legacy_sse_streams_are_capped_and_kept_alive_by_use() -> None:
    clock, ticks = Clock(), Ticks()
    store = SessionStore(
        idle_timeout=IDLE, max_sessions=3, max_per_principal=2, clock=clock, sleep=ticks.sleep
    )
    await store.start()
    await asyncio.wait_for(ticks.asked.get(), 5)
    alice, bob, carol = ((None, "t", None, s) for s in ("alice", "bob", "carol"))
    ended: list[str] = []
    a1 = await store.open_channel(alice, lambda: ended.append("a1"))
    a2 = await store.open_channel(alice, lambda: ended.append("a2"))
    with pytest.raises(TooManySessions):  # alice's third stream
        await store.open_channel(alice, lambda: ended.append("a3"))
    await store.open_channel(bob, lambda: ended.append("b1"))
    with pytest.raises(TooManySessions):  # the global cap: three streams are open
        await store.open_channel(carol, lambda: ended.append("c1"))
    # Streams do not use session places, nor sessions stream places.
    assert len(store) == 0 and store.channels == 3

    clock.now += IDLE * 0.75
    a2.touch()  # a message was posted on a2
    clock.now += IDLE * 0.5
    await ticks.tick()
    assert sorted(ended) == ["a1", "b1"] and store.channels == 1
    a1.release()  # the stream's own end after the sweep is harmless
    await store.open_channel(carol, lambda: ended.append("c1"))
    await store.aclose()
    assert sorted(ended) == ["a1", "a2", "b1", "c1"] and store.channels == 0
