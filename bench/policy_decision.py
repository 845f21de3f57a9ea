"""What a policy decision costs, measured in one process.

Reports p50 (and p99) for:

* one decision with the example policy set (``examples/policy/cedar``) through
  Wardgate's CedarEngine (input translation, per-call entity delta, reasons and
  obligations), beside a bare ``cedarpy.is_authorized`` call on the same request with
  pre-parsed policies and entities (the floor);
* the same decision through RegoEngine (regopy), for comparison;
* a ``tools/list`` of 200 tools filtered by the PolicyGuard: the first list (every
  item decided in one cedarpy batch) and a repeated one (decisions remembered);
* the whole pipeline (call + admit + end of a ``tools/call``) with the policy guard and
  without any guard.

Targets (issue 7): decision <= 30 us p50 and <= 1.5x bare cedarpy; 200-tool filtered
list <= 2 ms; pipeline with policy adds <= 0.1 ms p50.

Run: ``PYTHONPATH=src .venv/bin/python bench/policy_decision.py [--n N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import cedarpy

from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.identity.principal import Principal
from wardgate.policy.cedar import CedarEngine, _request, _subject_entity, _target_entity
from wardgate.policy.guard import PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder, InputConfig
from wardgate.policy.source import engine_from_files, read_policy_dir
from wardgate.wire.jsonrpc import Message

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "policy"
OFFICE = datetime(2026, 11, 30, 15, 0, tzinfo=UTC).timestamp()
ALICE = Principal("alice@acme", "jwt", tenant="acme", claims={"groups": ["staff"]})
CONFIG = InputConfig(
    tool_attributes={"read_record": {"tenant": "tenant"}},
    tenant_time_zones={"acme": "America/New_York"},
)


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e6
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1e6
    return f"p50 {p50:8.1f} us   p99 {p99:8.1f} us"


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def time_sync(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


async def time_async(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    for _ in range(min(200, n)):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


def _ctx(target: str | None) -> CallContext:
    return CallContext(
        route="crm",
        principal=ALICE,
        client_addr="10.0.0.5",
        received_at=OFFICE,
        upstream="crm",
        target=target,
    )


async def main(n: int) -> None:
    cedar = engine_from_files(read_policy_dir(EXAMPLES / "cedar"), revision="bench")
    rego = engine_from_files(read_policy_dir(EXAMPLES / "rego"), revision="bench")
    assert isinstance(cedar, CedarEngine)
    builder = InputBuilder(CONFIG)
    message = Message(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "read_record", "arguments": {"tenant": "acme", "id": 7}},
        },
        "request",
    )
    policy_input = builder.for_request(_ctx("read_record"), message)
    assert (await cedar.evaluate(policy_input)).allowed

    # The floor: cedarpy with every handle pre-parsed, the entities already holding
    # this request's subject and target, the request dict already built.
    entities = cedar._entities.with_added_json_str(
        json.dumps([_subject_entity(policy_input), _target_entity(policy_input)])
    )
    request = _request(policy_input)
    assert cedarpy.is_authorized(request, cedar._policies, entities).allowed
    bare = time_sync(lambda: cedarpy.is_authorized(request, cedar._policies, entities), n)
    ours = await time_async(lambda: cedar.evaluate(policy_input), n)
    regos = await time_async(lambda: rego.evaluate(policy_input), n)
    built = time_sync(lambda: builder.for_request(_ctx("read_record"), message), n)
    print(f"bare cedarpy.is_authorized        {_stats(bare)}")
    print(
        f"CedarEngine.evaluate (example)    {_stats(ours)}   ratio {_p50(ours) / _p50(bare):.2f}x"
    )
    print(f"RegoEngine.evaluate (example)     {_stats(regos)}")
    print(f"InputBuilder.for_request          {_stats(built)}")

    # tools/list with 200 tools through the guard's reply phase.
    tools = [{"name": t} for t in ("search_records", "read_record", "update_record")]
    tools += [{"name": f"tool_{i}", "description": "x" * 80} for i in range(197)]
    reply = Message({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}, "response")
    listing = Message({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "request")
    cold: list[float] = []
    for _ in range(max(20, n // 100)):
        holder = PolicyHolder(engine_from_files(read_policy_dir(EXAMPLES / "cedar")))
        pipeline = Pipeline([PolicyGuard(holder, builder)])
        call = pipeline.call(_ctx(None), listing)
        await pipeline.admit(call)
        t = time.perf_counter()
        await call.message(reply)
        cold.append(time.perf_counter() - t)
    pipeline = Pipeline([PolicyGuard(PolicyHolder(cedar), builder)])

    async def warm_list() -> None:
        call = pipeline.call(_ctx(None), listing)
        await pipeline.admit(call)
        out = await call.message(reply)
        assert out is not None and len(out.raw["result"]["tools"]) == 2

    warm = await time_async(warm_list, max(200, n // 10))
    per_item = _p50(cold) / 200
    print(
        f"tools/list 200, first (batched)   {_stats(cold)}   "
        f"{per_item:.1f} us an item = {per_item / _p50(bare):.2f}x a bare decision"
    )
    print(f"tools/list 200, repeated (+begin) {_stats(warm)}")

    # The whole pipeline for one tools/call: with the policy guard and with none.
    empty = Pipeline([])

    async def one(p: Pipeline) -> None:
        call = p.call(_ctx("read_record"), message)
        await p.admit(call)
        await call.end(200)

    without = await time_async(lambda: one(empty), n)
    with_policy = await time_async(lambda: one(pipeline), n)
    added = _p50(with_policy) - _p50(without)
    print(f"pipeline without guards           {_stats(without)}")
    print(f"pipeline with policy              {_stats(with_policy)}   adds {added:.1f} us p50")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    asyncio.run(main(parser.parse_args().n))
