"""Behaviour analytics: recorded call sequences replayed with an injected clock; each
detector fires on the pattern and stays silent beside it, on memory and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from wardgate.config.telemetry import UebaConfig
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.identity.principal import Principal
from wardgate.state import MemoryStateStore, RedisStateStore
from wardgate.state.store import StateStore
from wardgate.telemetry.events import EventBus
from wardgate.telemetry.sinks import MemorySink
from wardgate.telemetry.ueba import (
    BehaviourBlocked,
    GeoIp2Fast,
    Observation,
    StaticGeo,
    Ueba,
    UebaAlert,
    UebaGuard,
)
from wardgate.wire.jsonrpc import Message

REDIS_URL = "redis://127.0.0.1:6379/0"
GEO = StaticGeo(
    {
        "198.51.100.1": ("US", "AS-US-1"),
        "198.51.100.2": ("US", "AS-US-2"),
        "198.51.100.3": ("CA", "AS-CA"),
        "203.0.113.1": ("DE", "AS-DE"),
        "203.0.113.2": ("JP", "AS-JP"),
    }
)
ONLY = {
    "impossible_travel": False,
    "token_continents": False,
    "scripting": False,
    "new_asn": False,
    "first_seen_tool": False,
}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ueba(detector: str, store: StateStore | None = None, **config: Any) -> Ueba:
    cfg = UebaConfig.model_validate({**ONLY, detector: True, "geoip": "none", **config})
    return Ueba(cfg, store if store is not None else MemoryStateStore(), GEO)


async def _replay(
    ueba: Ueba, calls: list[tuple[float, str, str, str | None, str | None]]
) -> list[tuple[float, str, str]]:
    """(t, subject, address, token, tool) in order -> (t, subject, detector) of each alert."""
    fired = []
    for t, subject, addr, token, tool in calls:
        obs = Observation(1_000_000.0 + t, subject, "acme", addr, token, tool)
        fired.extend((t, a.subject, a.detector) for a in await ueba.observe(obs))
    return fired


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    prefix = f"wardgate-test:ueba:{uuid.uuid4().hex}:"
    s = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await s.start()
    yield s
    await s.aclose()
    raw = Redis.from_url(REDIS_URL)
    keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


async def test_impossible_travel(store: StateStore) -> None:
    ueba = _ueba("impossible_travel", store)
    fired = await _replay(
        ueba,
        [
            (0, "alice", "198.51.100.1", None, None),  # US
            (600, "alice", "203.0.113.1", None, None),  # DE ten minutes later: fires
            (0, "bob", "198.51.100.1", None, None),
            (72_000, "bob", "203.0.113.1", None, None),  # DE twenty hours later: a flight
            (0, "carol", "198.51.100.1", None, None),
            (5, "carol", "198.51.100.2", None, None),  # same country: 0 km
        ],
    )
    assert fired == [(600, "alice", "impossible_travel")]


async def test_one_token_from_two_continents_within_five_minutes(store: StateStore) -> None:
    ueba = _ueba("token_continents", store)
    fired = await _replay(
        ueba,
        [
            (0, "alice", "198.51.100.1", "tok-a", None),  # NA
            (200, "alice", "203.0.113.2", "tok-a", None),  # AS, 200 s later: fires
            (0, "bob", "198.51.100.1", "tok-b", None),
            (400, "bob", "203.0.113.2", "tok-b", None),  # past the window
            (0, "carol", "198.51.100.1", "tok-c", None),
            (10, "carol", "198.51.100.3", "tok-c", None),  # US then CA: one continent
        ],
    )
    assert fired == [(200, "alice", "token_continents")]


async def test_more_than_five_tools_in_under_a_second(store: StateStore) -> None:
    ueba = _ueba("scripting", store)
    burst = [(i * 0.15, "bot", "198.51.100.1", None, f"tool{i}") for i in range(7)]
    slow = [(i * 0.25, "human", "198.51.100.1", None, f"tool{i}") for i in range(7)]
    same = [(i * 0.05, "loop", "198.51.100.1", None, "search") for i in range(20)]
    fired = await _replay(ueba, burst + slow + same)
    # The sixth distinct tool within 1 s fires, once per window (not again at the seventh).
    assert fired == [(0.75, "bot", "scripting")]


async def test_new_asn_and_first_seen_tool_alert_only_for_subjects_with_history(
    store: StateStore,
) -> None:
    ueba = _ueba("new_asn", store, first_seen_tool=True)
    fired = await _replay(
        ueba,
        [
            (0, "alice", "198.51.100.1", None, "search"),  # learns AS-US-1 and search
            (10, "alice", "198.51.100.1", None, "search"),
            (20, "alice", "198.51.100.2", None, "search"),  # new network
            (30, "alice", "198.51.100.2", None, "delete"),  # new tool
            (40, "alice", "198.51.100.1", None, "delete"),  # both known by now
        ],
    )
    assert fired == [(20, "alice", "new_asn"), (30, "alice", "first_seen_tool")]


async def test_two_replicas_sharing_redis_see_one_history(store: StateStore) -> None:
    a, b = _ueba("impossible_travel", store), _ueba("impossible_travel", store)
    assert await _replay(a, [(0, "alice", "198.51.100.1", None, None)]) == []
    assert await _replay(b, [(60, "alice", "203.0.113.2", None, None)]) == [
        (60, "alice", "impossible_travel")
    ]


def _call(pipeline: Pipeline, subject: str, tool: str, at: float, addr: str) -> Any:
    ctx = CallContext(
        "r",
        principal=Principal(subject=subject, method="jwt", tenant="acme", claims={"jti": subject}),
        target=tool,
        client_addr=addr,
        received_at=at,
    )
    raw = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}
    return pipeline.call(ctx, Message(raw, "request"))


async def test_an_alert_blocks_the_subject_for_a_while_and_no_one_else() -> None:
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    cfg = UebaConfig.model_validate(
        {**ONLY, "scripting": True, "geoip": "none", "block_seconds": 60}
    )
    guard = UebaGuard(Ueba(cfg, store, GEO), clock=clock)
    sink = MemorySink()
    pipeline = Pipeline([guard], events=EventBus([sink]))
    for i in range(5):
        await pipeline.admit(_call(pipeline, "bot", f"t{i}", clock.now + i * 0.1, "198.51.100.1"))
    with pytest.raises(BehaviourBlocked) as refused:
        await pipeline.admit(_call(pipeline, "bot", "t5", clock.now + 0.5, "198.51.100.1"))
    assert refused.value.code == "wardgate.behaviour_blocked"
    (alert,) = sink.of(UebaAlert)
    assert alert.detector == "scripting" and alert.blocked_seconds == 60
    clock.now += 10
    with pytest.raises(BehaviourBlocked):  # still blocked, even for a quiet call
        await pipeline.admit(_call(pipeline, "bot", "t0", clock.now, "198.51.100.1"))
    await pipeline.admit(_call(pipeline, "human", "t0", clock.now, "198.51.100.1"))
    clock.now += 60
    await pipeline.admit(_call(pipeline, "bot", "t0", clock.now, "198.51.100.1"))


def test_the_shipped_geoip_database_places_public_addresses_only() -> None:
    geo = GeoIp2Fast()
    us = geo.lookup("8.8.8.8")
    assert us is not None and us.country == "US" and us.continent == "NA" and us.asn
    gb = geo.lookup("81.2.69.160")
    assert gb is not None and gb.continent == "EU"
    assert geo.lookup("10.0.0.1") is None and geo.lookup("127.0.0.1") is None
    assert geo.lookup("not an address") is None


def test_geoip_lookups_are_cached_within_a_bound_and_stay_correct() -> None:
    geo = GeoIp2Fast(cache_size=2)
    addresses = ["8.8.8.8", "81.2.69.160", "10.0.0.1", "8.8.8.8"]
    places = [geo.lookup(a) for a in addresses]
    assert [p.country if p else None for p in places] == ["US", "GB", None, "US"]
    assert len(geo._cache) == 2  # the oldest went first; a spray of addresses cannot grow it
    assert geo.lookup("81.2.69.160") == places[1]
