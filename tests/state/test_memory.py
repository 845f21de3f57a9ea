from __future__ import annotations

import pytest

from wardgate.state import MemoryStateStore, StateStore, StateStoreUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(MemoryStateStore(), StateStore)


async def test_a_key_is_new_once_then_seen_until_it_expires() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock=clock)
    await store.start()
    assert await store.add_once("jti-1", 10) is True
    assert await store.add_once("jti-1", 10) is False
    clock.now += 9.999
    assert await store.add_once("jti-1", 10) is False
    clock.now += 0.001
    assert await store.add_once("jti-1", 10) is True
    await store.aclose()


async def test_expired_keys_are_purged_so_the_store_stays_bounded() -> None:
    clock = FakeClock()
    store = MemoryStateStore(max_keys=3, clock=clock)
    for i in range(3):
        assert await store.add_once(f"k{i}", 5)
    clock.now += 5
    assert len(store) == 0
    for i in range(3):
        assert await store.add_once(f"n{i}", 5)


async def test_a_full_store_refuses_rather_than_evicting_a_live_key() -> None:
    store = MemoryStateStore(max_keys=2, clock=FakeClock())
    assert await store.add_once("a", 60)
    assert await store.add_once("b", 60)
    with pytest.raises(StateStoreUnavailable) as info:
        await store.add_once("c", 60)
    assert info.value.code == "wardgate.state_unavailable"
    # the live keys are still remembered
    assert await store.add_once("a", 60) is False


@pytest.mark.parametrize(("key", "ttl"), [("", 1.0), ("k", 0.0), ("k", -1.0), ("k", float("nan"))])
async def test_bad_arguments_are_rejected(key: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        await MemoryStateStore().add_once(key, ttl)
