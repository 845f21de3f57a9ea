"""Cost quotas (denial of wallet) and argument bounds: the expensive loop stops at the
budget; a call that reports a lower cost gives the rest back; months turn over in the
tenant's time zone; a legitimate caller of another tenant is unaffected."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from limits.conftest import REDIS_URL, Clock, call_tool, gateway_config, make_call, result_message
from support.servers import gateway_events, run_gateway
from wardgate.config.limits import ArgumentRule, BudgetConfig, ToolLimitsConfig
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied
from wardgate.limits import ArgumentRefused, BudgetExhausted
from wardgate.limits.limit_events import BudgetExhaustedEvent
from wardgate.limits.quota import ArgumentGuard, CostQuotaGuard, month_window
from wardgate.state import MemoryStateStore, RedisStateStore, StateStore
from wardgate.telemetry.events import EventBus
from wardgate.telemetry.sinks import MemorySink

TOOLS = {"query": ToolLimitsConfig(max_cost_usd=5.0, monthly_usd=100.0)}


def _quota(store: StateStore, wall: Clock, budgets: BudgetConfig | None = None) -> Pipeline:
    guard = CostQuotaGuard(
        store, budgets or BudgetConfig(monthly_usd=1000.0), TOOLS, wall_clock=wall
    )
    return Pipeline([guard], events=EventBus([MemorySink()]))


async def _run(pipeline: Pipeline, cost: float | None = None, **kw: object) -> None:
    call = make_call(pipeline, **kw)  # type: ignore[arg-type]
    try:
        await pipeline.admit(call)
        await call.message(
            result_message(meta=None if cost is None else {"wardgate.dev/costUsd": cost})
        )
    finally:
        await call.end(200)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_ten_thousand_expensive_calls_stop_at_the_budget(
    backend: str, redis_prefix: str
) -> None:
    wall = Clock(datetime(2026, 11, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    store: StateStore = (
        MemoryStateStore()
        if backend == "memory"
        else RedisStateStore(REDIS_URL, key_prefix=redis_prefix)
    )
    await store.start()
    try:
        pipeline = _quota(store, wall)
        served = refused = 0
        for _ in range(10_000):
            try:
                await _run(pipeline)  # reports no cost: the reservation (5 USD) is kept
                served += 1
            except BudgetExhausted as exc:
                refused += 1
                # Until the month turns (Dec 1st, 00:00 UTC): 21 days.
                assert exc.retry_after == pytest.approx(21 * 86_400)
                if refused == 50:
                    break
        assert served == 20  # 100 USD / 5 USD, not one more
        # Another tenant's budget is untouched.
        await _run(pipeline, tenant="other")
        sink = pipeline.events.sinks[0]
        assert isinstance(sink, MemorySink)
        cut = sink.of(BudgetExhaustedEvent)
        assert len(cut) == 50 and cut[0].budget == "tool=query" and cut[0].month == "2026-11"
    finally:
        await store.aclose()


async def test_reported_cost_settles_the_reservation() -> None:
    store = MemoryStateStore()
    wall = Clock(datetime(2026, 11, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    pipeline = _quota(store, wall)
    for _ in range(96):  # each reserves 5, then settles at 1: 96 fit in 100
        await _run(pipeline, cost=1.0)
    # 96 spent: a 97th call might cost 5, which the budget cannot cover.
    with pytest.raises(BudgetExhausted):
        await _run(pipeline, cost=1.0)
    month, _ = month_window(wall(), ZoneInfo("UTC"))
    assert await store.counter_get(f"budget:t=acme:{month}", "tool=query") == 96_000_000


async def test_a_call_a_later_guard_refuses_gives_its_reservation_back() -> None:
    class DenyAll:
        name = "deny_all"
        methods = None
        fail_open = False

        async def on_request(self, call: object, message: object) -> object:
            raise Denied("no")

    store = MemoryStateStore()
    wall = Clock(datetime(2026, 11, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    quota = CostQuotaGuard(store, BudgetConfig(), TOOLS, wall_clock=wall)
    pipeline = Pipeline([quota, DenyAll()])
    for _ in range(50):
        call = make_call(pipeline)
        with pytest.raises(Denied):
            await pipeline.admit(call)
        await call.end(200)
    assert await store.counter_get("budget:t=acme:2026-11", "tool=query") == 0


async def test_the_month_turns_in_the_tenants_time_zone() -> None:
    zone = ZoneInfo("Pacific/Auckland")
    # 23:59:00 on Nov 30th in Auckland is still November there (Nov 30th, 10:59 UTC).
    wall = Clock(datetime(2026, 11, 30, 23, 59, tzinfo=zone).timestamp())
    budgets = BudgetConfig(tenant_timezones={"acme": "Pacific/Auckland"})
    pipeline = _quota(MemoryStateStore(), wall, budgets)
    for _ in range(20):
        await _run(pipeline)
    with pytest.raises(BudgetExhausted) as cut:
        await _run(pipeline)
    assert cut.value.retry_after == pytest.approx(60)
    wall.now += 60  # midnight in Auckland: December, a fresh budget
    await _run(pipeline)
    # A UTC tenant is still in November at that instant, with its own budget.
    assert datetime.fromtimestamp(wall.now, ZoneInfo("UTC")).month == 11


async def test_subject_budget_cuts_one_subject_not_its_tenant() -> None:
    wall = Clock(datetime(2026, 11, 10, tzinfo=ZoneInfo("UTC")).timestamp())
    pipeline = _quota(MemoryStateStore(), wall, BudgetConfig(subject_monthly_usd=10.0))
    await _run(pipeline, subject="greedy")
    await _run(pipeline, subject="greedy")
    with pytest.raises(BudgetExhausted):
        await _run(pipeline, subject="greedy")
    await _run(pipeline, subject="colleague")


async def test_argument_bounds() -> None:
    guard = ArgumentGuard({"query": {"maximum_bytes_billed": ArgumentRule(max=10**10)}})
    pipeline = Pipeline([guard])
    for bad in (
        {},
        {"maximum_bytes_billed": 10**12},
        {"maximum_bytes_billed": "lots"},
        {"maximum_bytes_billed": True},
        {"maximum_bytes_billed": None},
    ):
        with pytest.raises(ArgumentRefused):
            await pipeline.admit(make_call(pipeline, arguments=bad))
    await pipeline.admit(make_call(pipeline, arguments={"maximum_bytes_billed": 10**9}))
    await pipeline.admit(make_call(pipeline, arguments={"maximum_bytes_billed": "1000000000"}))
    await pipeline.admit(make_call(pipeline, "echo"))  # other tools are not bound


async def test_through_the_gateway(redis_prefix: str) -> None:
    limits = {
        "store": "redis",
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
        "budgets": {"monthly_usd": 12.0},
        "tools": {
            "query": {
                "max_cost_usd": 5.0,
                "arguments": {"maximum_bytes_billed": {"max": 1e10}},
            }
        },
    }
    async with run_gateway(gateway_config(limits)) as (base, gw):
        status, _, answer = await call_tool(base, "query", {})
        assert status == 200 and answer["error"]["data"]["code"] == "wardgate.argument_refused"
        ok = {"maximum_bytes_billed": 1000}
        for _ in range(2):
            status, _, answer = await call_tool(base, "query", ok)
            assert status == 200 and "result" in answer
        status, headers, answer = await call_tool(base, "query", ok)
        assert status == 429 and int(headers["retry-after"]) > 0
        assert answer["error"]["code"] == -32030
        assert answer["error"]["data"]["code"] == "wardgate.budget_exhausted"
        # A tool without a cost is not cut.
        status, _, answer = await call_tool(base, "echo")
        assert status == 200 and "result" in answer
        assert gateway_events(gw).of(BudgetExhaustedEvent)


async def test_the_upstreams_reported_cost_settles_through_the_gateway(redis_prefix: str) -> None:
    limits = {
        "store": "redis",
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
        "tools": {"query": {"max_cost_usd": 5.0, "monthly_usd": 10.0}},
    }
    async with run_gateway(gateway_config(limits)) as (base, gw):
        assert gw.limits is not None
        store = gw.limits.store
        month, _ = month_window(time.time(), ZoneInfo("UTC"))

        async def settled(expected: int) -> None:
            # Settlement runs in the end hook, after the answer: a bounded wait.
            for _ in range(200):
                if await store.counter_get(f"budget:t=-:{month}", "tool=query") == expected:
                    return
                await asyncio.sleep(0.01)
            pytest.fail(f"spent never reached {expected}")

        # Each call reserves 5 USD and reports 0.25: while 5 or less is spent, the
        # next call fits (21 calls), where without settlement only 2 would.
        for i in range(21):
            status, _, answer = await call_tool(base, "query", {"cost": 0.25}, i)
            assert status == 200 and "result" in answer
            await settled((i + 1) * 250_000)
        status, _, answer = await call_tool(base, "query", {"cost": 0.25})
        assert status == 429 and answer["error"]["data"]["code"] == "wardgate.budget_exhausted"
