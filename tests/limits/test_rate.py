"""Rate limits: the flood is refused with 429 + Retry-After, exactly at the budget,
across replicas; a legitimate caller beside it is served."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from limits.conftest import SERVER, Clock, call_tool, gateway_config, make_call
from support.http import modern_body, modern_headers
from support.servers import free_port, run_gateway, wait_port
from wardgate.config.limits import RateConfig
from wardgate.core.pipeline import Pipeline
from wardgate.limits import RateLimited
from wardgate.limits.rate import RateLimitGuard
from wardgate.state import MemoryStateStore, RedisStateStore

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_a_subject_is_cut_at_its_burst_and_another_is_not() -> None:
    clock = Clock()
    guard = RateLimitGuard(MemoryStateStore(clock=clock), "lim", RateConfig(), {})
    pipeline = Pipeline([guard])
    for _ in range(20):  # the default burst
        await pipeline.admit(make_call(pipeline, subject="flood"))
    with pytest.raises(RateLimited) as refused:
        await pipeline.admit(make_call(pipeline, subject="flood"))
    # 100 per minute: the next token in 0.6 s.
    assert refused.value.retry_after == pytest.approx(0.6)
    assert refused.value.data == {"retryAfterSeconds": 1}
    await pipeline.admit(make_call(pipeline, subject="bystander"))
    clock.now += 0.6
    await pipeline.admit(make_call(pipeline, subject="flood"))


async def test_tenant_tool_and_ip_keys_each_make_their_own_bucket() -> None:
    guard = RateLimitGuard(
        MemoryStateStore(clock=Clock()),
        "lim",
        RateConfig(requests=1, per_seconds=3600, burst=1, key=("tenant", "tool")),
        {},
    )
    pipeline = Pipeline([guard])
    await pipeline.admit(make_call(pipeline, "query", subject="a", tenant="t1"))
    with pytest.raises(RateLimited):  # same tenant and tool, other subject: one bucket
        await pipeline.admit(make_call(pipeline, "query", subject="b", tenant="t1"))
    await pipeline.admit(make_call(pipeline, "echo", subject="b", tenant="t1"))
    await pipeline.admit(make_call(pipeline, "query", subject="b", tenant="t2"))


async def test_http_answer_is_429_with_retry_after_and_data() -> None:
    limits = {"rate": {"requests": 1, "per_seconds": 3600, "burst": 3, "key": ["subject", "tool"]}}
    async with run_gateway(gateway_config(limits)) as (base, _):
        for i in range(3):
            status, _, answer = await call_tool(base, "echo", request_id=i)
            assert status == 200 and "result" in answer
        status, headers, answer = await call_tool(base, "echo", request_id=9)
        assert status == 429
        assert 3500 < int(headers["retry-after"]) <= 3600
        error = answer["error"]
        assert error["code"] == -32029 and answer["id"] == 9
        assert error["data"]["code"] == "wardgate.rate_limited"
        assert error["data"]["retryAfterSeconds"] == int(headers["retry-after"])
        # Another tool has its own bucket: the legitimate call still goes through.
        status, _, answer = await call_tool(base, "other")
        assert status == 200 and "result" in answer


def _config_toml(port: int, prefix: str, burst: int) -> str:
    command = ", ".join(f'"{p}"' for p in SERVER)
    return f"""
[server]
port = {port}

[log]
events = false
level = "error"

[upstreams.lim]
transport = "stdio"
command = [{command}]
sandbox = "insecure-none"

[routes.lim]
upstreams = ["lim"]

[limits]
store = "redis"

[limits.redis]
url = "{REDIS_URL}"
key_prefix = "{prefix}"

[limits.rate]
requests = 1
per_seconds = 3600
burst = {burst}
"""


async def test_64_clients_through_3_gateway_processes_get_exactly_the_budget(
    tmp_path: Path, redis_prefix: str
) -> None:
    burst = 50
    ports = [free_port() for _ in range(3)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = []
    try:
        for port in ports:
            cfg = tmp_path / f"gw{port}.toml"
            cfg.write_text(_config_toml(port, redis_prefix, burst))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "wardgate.cli", "serve", "-c", str(cfg)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        for port, proc in zip(ports, procs, strict=True):
            await asyncio.to_thread(wait_port, port, 30.0, proc)

        statuses: Counter[int] = Counter()
        codes: Counter[str] = Counter()

        async def client(n: int, session: aiohttp.ClientSession) -> None:
            for i in range(5):
                port = ports[(n + i) % 3]
                body = orjson.dumps(modern_body("tools/call", {"name": "echo"}, n * 10 + i))
                async with session.post(
                    f"http://127.0.0.1:{port}/mcp/lim",
                    data=body,
                    headers=modern_headers("tools/call", "echo"),
                ) as resp:
                    answer: dict[str, Any] = orjson.loads(await resp.read())
                    statuses[resp.status] += 1
                    if "error" in answer:
                        codes[answer["error"]["data"]["code"]] += 1

        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(asyncio.gather(*(client(n, session) for n in range(64))), 120)
        assert statuses == Counter({200: burst, 429: 64 * 5 - burst})
        assert codes == Counter({"wardgate.rate_limited": 64 * 5 - burst})
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_redis_bucket_is_shared_by_two_stores(redis_prefix: str) -> None:
    a = RedisStateStore(REDIS_URL, key_prefix=redis_prefix)
    b = RedisStateStore(REDIS_URL, key_prefix=redis_prefix)
    await a.start()
    await b.start()
    try:
        ga = RateLimitGuard(a, "lim", RateConfig(requests=1, per_seconds=3600, burst=2), {})
        gb = RateLimitGuard(b, "lim", RateConfig(requests=1, per_seconds=3600, burst=2), {})
        pa, pb = Pipeline([ga]), Pipeline([gb])
        await pa.admit(make_call(pa))
        await pb.admit(make_call(pb))
        with pytest.raises(RateLimited):
            await pa.admit(make_call(pa))
    finally:
        await a.aclose()
        await b.aclose()
