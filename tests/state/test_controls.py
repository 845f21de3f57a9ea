"""The controls' store operations, on both backends: memory (injected clock) and the real
Redis on 127.0.0.1:6379 (own key prefix, cleaned up). Redis keeps its own time, so its
tests use rates and windows long enough that a test's run time does not matter."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wardgate.state import MemoryStateStore, RedisStateStore, StateStore

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _redis() -> AsyncIterator[RedisStateStore]:
    prefix = f"wardgate-test:{uuid.uuid4().hex}:"
    store = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await store.start()
    yield store
    await store.aclose()
    raw = Redis.from_url(REDIS_URL)
    keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStateStore]:
    async for s in _redis():
        yield s


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore(clock=Clock())
        return
    async for s in _redis():
        yield s


async def test_a_bucket_grants_its_burst_then_refuses_with_a_retry_after(store: StateStore) -> None:
    # One token per 100 s: nothing refills while the test runs.
    takes = [await store.take_token("b", 0.01, 5) for _ in range(7)]
    assert [t.allowed for t in takes] == [True] * 5 + [False] * 2
    assert [t.remaining for t in takes[:5]] == [4, 3, 2, 1, 0]
    assert 90 < takes[-1].retry_after <= 100
    # A bucket of another key is untouched.
    assert (await store.take_token("other", 0.01, 5)).allowed


async def test_memory_bucket_refills_with_the_clock() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    for _ in range(2):
        assert (await store.take_token("b", 1.0, 2)).allowed
    refused = await store.take_token("b", 1.0, 2)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    assert (await store.take_token("b", 1.0, 2)).allowed
    assert not (await store.take_token("b", 1.0, 2)).allowed
    clock.now += 100  # refills to the burst, never beyond
    assert [(await store.take_token("b", 1.0, 2)).allowed for _ in range(3)] == [True, True, False]


async def test_concurrent_takes_never_over_grant(store: StateStore) -> None:
    results = await asyncio.gather(*(store.take_token("hot", 0.001, 10) for _ in range(64)))
    assert sum(r.allowed for r in results) == 10


async def test_counters_reserve_all_or_nothing(store: StateStore) -> None:
    assert await store.counters_reserve("t1", ["a", "b"], 40, [100, 50], 60) == -1
    # b would reach 80 > 50: nothing is added to either.
    assert await store.counters_reserve("t1", ["a", "b"], 40, [100, 50], 60) == 1
    assert await store.counter_get("t1", "a") == 40
    assert await store.counter_get("t1", "b") == 40
    await store.counters_add("t1", ["a", "b"], -30, 60)
    assert await store.counter_get("t1", "b") == 10
    assert await store.counters_reserve("t1", ["a", "b"], 40, [100, 50], 60) == -1
    assert await store.counter_get("t2", "a") == 0


async def test_slots_cap_holders_and_come_back_on_release(store: StateStore) -> None:
    assert await store.slot_acquire("s", "h1", 2, 60)
    assert await store.slot_acquire("s", "h2", 2, 60)
    assert not await store.slot_acquire("s", "h3", 2, 60)
    assert await store.slot_acquire("s", "h1", 2, 60)  # a holder re-entering keeps its slot
    await store.slot_release("s", "h1")
    assert await store.slot_acquire("s", "h3", 2, 60)


async def test_memory_slots_of_a_dead_holder_expire() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    assert await store.slot_acquire("s", "crashed", 1, 30)
    assert not await store.slot_acquire("s", "live", 1, 30)
    clock.now += 31
    assert await store.slot_acquire("s", "live", 1, 30)


async def test_redis_slots_of_a_dead_holder_expire(redis_store: RedisStateStore) -> None:
    assert await redis_store.slot_acquire("s", "crashed", 1, 0.05)
    raw = Redis.from_url(REDIS_URL)
    try:
        # Bounded wait on Redis's own clock, not a sleep in the test's logic.
        for _ in range(200):
            if await redis_store.slot_acquire("s", "live", 1, 30):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the dead holder's slot never expired")
    finally:
        await raw.aclose()


async def test_window_counts_sum_over_the_window(store: StateStore) -> None:
    for failed in (0, 1, 0, 1, 1):
        sums = await store.window_add("w", {"n": 1, "e": failed}, 60)
    assert sums == {"n": 5, "e": 3}
    assert await store.window_add("other", {"n": 1}, 60) == {"n": 1}


async def test_memory_window_slides() -> None:
    clock = Clock()
    clock.now = 995.0  # the start of a 1 s slice of a 10 s window
    store = MemoryStateStore(clock=clock)
    await store.window_add("w", {"n": 3}, 10)
    clock.now += 5
    assert await store.window_add("w", {"n": 1}, 10) == {"n": 4}
    clock.now += 5  # the first slice has slid out
    assert await store.window_add("w", {"n": 1}, 10) == {"n": 2}
    clock.now += 100
    assert await store.window_add("w", {"n": 1}, 10) == {"n": 1}


async def test_documents_round_trip(store: StateStore) -> None:
    assert await store.doc_get("d") is None
    await store.doc_put("d", {"state": "open", "until": 12.5, "gen": 3}, None)
    assert await store.doc_get("d") == {"state": "open", "until": 12.5, "gen": 3}
    await store.doc_delete("d")
    assert await store.doc_get("d") is None


async def test_a_document_read_or_written_is_the_callers_own_copy(store: StateStore) -> None:
    """No caller changes what another reads, flat or nested (memory copies flat documents
    shallowly, their values being immutable; Redis sends JSON)."""
    flat = {"v": "1000.0 US", "q": 2.5}
    nested = {"slots": {"a": 1.0}, "list": [1, 2]}
    await store.doc_put("flat", flat, 60)
    await store.doc_put("nested", nested, 60)
    flat["v"] = "written after"
    nested["slots"]["b"] = 2.0  # type: ignore[index]
    got_flat, got_nested = await store.doc_get("flat"), await store.doc_get("nested")
    assert got_flat == {"v": "1000.0 US", "q": 2.5}
    assert got_nested == {"slots": {"a": 1.0}, "list": [1, 2]}
    assert got_flat is not None and got_nested is not None
    got_flat["v"] = "changed by a reader"
    got_nested["slots"]["a"] = 99.0
    got_nested["list"].append(3)
    assert await store.doc_get("flat") == {"v": "1000.0 US", "q": 2.5}
    assert await store.doc_get("nested") == {"slots": {"a": 1.0}, "list": [1, 2]}


async def test_redis_keys_are_prefixed_and_hash_tagged(redis_store: RedisStateStore) -> None:
    await redis_store.take_token("rl:route:s=alice", 1, 5)
    await redis_store.counters_reserve("budget:t=acme", ["tenant", "tool=q"], 1, [9, 9], 60)
    raw = Redis.from_url(REDIS_URL)
    try:
        keys = sorted([k.decode() async for k in raw.scan_iter(match=redis_store.key_prefix + "*")])
    finally:
        await raw.aclose()
    p = redis_store.key_prefix
    assert keys == sorted(
        [p + "{rl:route:s=alice}", p + "{budget:t=acme}:tenant", p + "{budget:t=acme}:tool=q"]
    )


async def test_a_decision_is_one_round_trip(redis_store: RedisStateStore) -> None:
    await redis_store.take_token("warm", 1, 5)  # loads the script
    raw = Redis.from_url(REDIS_URL)
    try:
        before = int((await raw.info("stats"))["total_commands_processed"])
        await redis_store.take_token("warm", 1, 5)
        after = int((await raw.info("stats"))["total_commands_processed"])
    finally:
        await raw.aclose()
    # Our EVALSHA, plus the INFO that read the counter (other clients may add more).
    assert after - before >= 2
    assert (await redis_store.take_token("warm", 1, 5)).allowed


async def test_concurrent_reservations_never_overspend(store: StateStore) -> None:
    found = await asyncio.gather(
        *(store.counters_reserve("race", ["tenant", "tool"], 5, [100, 1000], 60) for _ in range(64))
    )
    assert found.count(-1) == 20 and found.count(0) == 44
    assert await store.counter_get("race", "tenant") == 100


async def test_concurrent_slot_grabs_never_exceed_the_cap(store: StateStore) -> None:
    got = await asyncio.gather(*(store.slot_acquire("cap", f"h{i}", 3, 60) for i in range(64)))
    assert sum(got) == 3
