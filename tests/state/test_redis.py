"""Against the real Redis on 127.0.0.1:6379, each test under its own key prefix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wardgate.errors import ConfigError
from wardgate.state import RedisStateStore, StateStore, StateStoreUnavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis is not running on 127.0.0.1:6379: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(raw: Redis) -> AsyncIterator[str]:
    value = f"wardgate-test:{uuid.uuid4().hex}:"
    yield value
    keys = [k async for k in raw.scan_iter(match=value + "*")]
    if keys:
        await raw.delete(*keys)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await s.start()
    yield s
    await s.aclose()


async def test_redis_store_satisfies_the_protocol() -> None:
    assert isinstance(RedisStateStore(), StateStore)


async def test_a_key_is_new_once(store: RedisStateStore) -> None:
    assert await store.add_once("jti-1", 30) is True
    assert await store.add_once("jti-1", 30) is False
    assert await store.add_once("jti-2", 30) is True


async def test_the_key_is_written_under_the_prefix_with_a_ttl(
    store: RedisStateStore, raw: Redis, prefix: str
) -> None:
    await store.add_once("jti-ttl", 2.5)
    assert await raw.get(prefix + "jti-ttl") == b"1"
    pttl = await raw.pttl(prefix + "jti-ttl")
    assert 0 < pttl <= 2500


async def test_an_expired_key_is_new_again(store: RedisStateStore, raw: Redis, prefix: str) -> None:
    await store.add_once("jti-x", 30)
    await raw.delete(prefix + "jti-x")  # what expiry does, without sleeping
    assert await store.add_once("jti-x", 30) is True


async def test_two_replicas_share_the_replay_cache(store: RedisStateStore, prefix: str) -> None:
    other = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await other.start()
    try:
        assert await store.add_once("shared", 30) is True
        assert await other.add_once("shared", 30) is False
    finally:
        await other.aclose()


async def test_an_unreachable_redis_fails_closed_at_start() -> None:
    s = RedisStateStore("redis://127.0.0.1:1/0", key_prefix="x:", socket_timeout=0.5)
    with pytest.raises(StateStoreUnavailable) as info:
        await s.start()
    assert info.value.code == "wardgate.state_unavailable"
    await s.aclose()


async def test_use_before_start_fails_closed() -> None:
    with pytest.raises(StateStoreUnavailable):
        await RedisStateStore().add_once("k", 1)


async def test_a_redis_that_goes_away_fails_closed(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, socket_timeout=0.5)
    s = RedisStateStore(key_prefix=prefix, client=client)
    await s.start()
    # A client pointed at a dead port models the server going away mid-run.
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    s2 = RedisStateStore(key_prefix=prefix, client=dead)
    with pytest.raises(StateStoreUnavailable):
        await s2.add_once("k", 1)
    await s.aclose()  # does not close a caller-owned client
    assert await client.ping()
    await client.aclose()
    await dead.aclose()


def test_an_empty_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RedisStateStore(key_prefix="")
