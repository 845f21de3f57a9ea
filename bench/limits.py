"""What a rate-limit decision costs, measured in one process.

* Redis: one ``take_token`` (one ``EVALSHA`` round trip to the Redis on 127.0.0.1:6379)
  beside a bare ``PING`` round trip from the same process and client library, both
  sequential, p50 and mean. Target (issue 10): at most 1.5 x the PING.
* Memory: one ``take_token`` on :class:`MemoryStateStore`, and the whole
  :class:`RateLimitGuard` step. Target: at most 5 us.

Run: ``.venv/bin/python bench/limits.py [--calls N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from wardgate.config.limits import RateConfig
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.identity.principal import Principal
from wardgate.limits.fallback import FallbackStore
from wardgate.limits.rate import RateLimitGuard
from wardgate.state import MemoryStateStore, RedisStateStore, StateStore
from wardgate.wire.jsonrpc import Message

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _timed(op: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    for _ in range(min(200, calls)):
        await op()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        await op()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def _line(name: str, samples: list[float]) -> float:
    p50 = statistics.median(samples)
    print(f"{name:42s} p50 {p50:8.2f} us   mean {statistics.fmean(samples):8.2f} us")
    return p50


async def main(calls: int) -> None:
    prefix = f"wardgate-bench:{uuid.uuid4().hex}:"
    raw = Redis.from_url(REDIS_URL)
    store = RedisStateStore(REDIS_URL, key_prefix=prefix)
    await store.start()
    try:
        # Interleave the two in rounds so that machine noise hits both alike.
        pings: list[float] = []
        takes: list[float] = []
        for _ in range(5):
            pings += await _timed(raw.ping, calls // 5)
            takes += await _timed(lambda: store.take_token("bench", 1e9, 1_000_000), calls // 5)
        ping = _line("redis PING (same process, redis-py)", pings)
        take = _line("redis take_token (EVALSHA)", takes)
        print(f"{'ratio take_token / PING':42s} {take / ping:.2f} x  (target <= 1.5)")
    finally:
        await store.aclose()
        keys = [k async for k in raw.scan_iter(match=prefix + "*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()

    memory = MemoryStateStore()
    _line(
        "memory take_token",
        await _timed(lambda: memory.take_token("bench", 1e9, 1_000_000), calls),
    )
    ctx = CallContext("r", principal=Principal(subject="bench", method="jwt"), target="t")
    message = Message({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}, "request")
    rate = RateConfig(requests=10**9, per_seconds=1, burst=10**6)
    # Bare, and as the gateway wires it: over the failure-handling wrapper.
    stores: list[tuple[str, StateStore]] = [
        ("", memory),
        (" (FallbackStore)", FallbackStore(MemoryStateStore())),
    ]
    for name, store in stores:
        guard = RateLimitGuard(store, "r", rate, {})
        call = Pipeline([guard]).call(ctx, message)
        _line(
            f"memory RateLimitGuard.on_request{name}",
            await _timed(lambda g=guard, c=call: g.on_request(c, message), calls),  # type: ignore[misc]
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().calls))
