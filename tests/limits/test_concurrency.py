"""Concurrency caps: a caller that opens too many calls waits briefly then is refused;
slots come back at the end of every call, a client that went away included."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from limits.conftest import REDIS_URL, call_tool, gateway_config, make_call
from support.http import modern_body, modern_headers
from support.servers import run_gateway
from wardgate.config.limits import ConcurrencyConfig
from wardgate.core.pipeline import Pipeline
from wardgate.limits import ConcurrencyLimited
from wardgate.limits.concurrency import ConcurrencyGuard
from wardgate.state import MemoryStateStore


async def test_per_subject_cap_refuses_the_third_and_spares_others() -> None:
    guard = ConcurrencyGuard(
        MemoryStateStore(), "lim", ConcurrencyConfig(per_subject=2, queue_seconds=0), {}
    )
    pipeline = Pipeline([guard])
    held = [make_call(pipeline, subject="greedy", request_id=i) for i in range(2)]
    for call in held:
        await pipeline.admit(call)
    extra = make_call(pipeline, subject="greedy")
    with pytest.raises(ConcurrencyLimited) as refused:
        await pipeline.admit(extra)
    await extra.end(200)
    assert refused.value.http_status == 429 and refused.value.data == {"retryAfterSeconds": 1}
    other = make_call(pipeline, subject="colleague")
    await pipeline.admit(other)
    await held[0].end(200)
    again = make_call(pipeline, subject="greedy")
    await pipeline.admit(again)


async def test_a_queued_call_gets_the_slot_a_finished_call_frees() -> None:
    guard = ConcurrencyGuard(
        MemoryStateStore(), "lim", ConcurrencyConfig(queue_seconds=10), {"query": 1}
    )
    pipeline = Pipeline([guard])
    first = make_call(pipeline)
    await pipeline.admit(first)
    second = make_call(pipeline, request_id=2)
    waiting = asyncio.create_task(pipeline.admit(second))
    await asyncio.sleep(0)  # let it queue
    assert not waiting.done()
    await first.end(200)
    await asyncio.wait_for(waiting, 5)


async def test_a_client_that_disconnects_mid_call_gives_its_slot_back(redis_prefix: str) -> None:
    limits = {
        "store": "redis",
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
        "concurrency": {"queue_seconds": 0},
        "tools": {"slow": {"concurrency": 1}},
    }
    async with run_gateway(gateway_config(limits)) as (base, gw):
        session = aiohttp.ClientSession()
        body = orjson.dumps(
            modern_body("tools/call", {"name": "slow", "arguments": {"seconds": 60}})
        )

        async def hold() -> None:
            async with session.post(
                f"{base}/mcp/lim", data=body, headers=modern_headers("tools/call", "slow")
            ) as resp:
                await resp.read()

        holder = asyncio.create_task(hold())
        try:
            # Bounded wait until the slow call holds the slot: a second one is refused.
            for _ in range(200):
                if holder.done():  # our probe took the slot first: hold again
                    holder = asyncio.create_task(hold())
                    await asyncio.sleep(0.02)
                status, _, answer = await call_tool(base, "slow", {"seconds": 0})
                if status == 429 and not holder.done():
                    assert answer["error"]["data"]["code"] == "wardgate.concurrency_limited"
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the slow call never held its slot")
            # Other tools are served meanwhile.
            status, _, answer = await call_tool(base, "echo")
            assert status == 200 and "result" in answer
        finally:
            holder.cancel()
            await session.close()  # the client goes away mid-call
        for _ in range(250):
            status, _, answer = await call_tool(base, "slow", {"seconds": 0})
            if status == 200:
                assert "result" in answer
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the slot of the client that went away was never released")
        assert gw.limits is not None
