"""What the content guards add to one call through the pipeline, measured in-process.

Drives a real :class:`~wardgate.core.pipeline.Pipeline` the way a route does (call, admit,
one reply message, end) for a typical ``tools/call`` (four arguments, a 2 kB text
result), once with no guards and once with the four content guards, and prints p50 and
p99 per call of each and the difference. Target (issue 8): at most 0.15 ms p50 added.

Run: ``.venv/bin/python bench/content_pipeline.py [--calls N]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from wardgate.content.guard_settings import ContentSettings
from wardgate.content.guards import content_guards
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.wire.jsonrpc import Message

TOOL: dict[str, Any] = {
    "name": "set_cell",
    "description": "Set a cell of a spreadsheet.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "sheet": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
            "cell": {"type": "string", "pattern": "^[A-Z]+[0-9]+$"},
            "value": {"type": "string"},
            "options": {"type": "object", "properties": {"bold": {"type": "boolean"}}},
        },
        "required": ["sheet", "cell", "value"],
    },
}
ARGS = {"sheet": "Q3", "cell": "B12", "value": "Total revenue, in euros", "options": {"bold": True}}
TEXT = ("Cell B12 of sheet Q3 now reads: Total revenue, in euros. " * 40)[:2048]


async def one(pipeline: Pipeline, method: str, params: dict[str, Any], result: Any) -> None:
    ctx = CallContext(route="r", upstream="sheets", target=params.get("name"))
    request = Message({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, "request")
    call = pipeline.call(ctx, request)
    try:
        await pipeline.admit(call)
        await call.message(Message({"jsonrpc": "2.0", "id": 1, "result": result}, "response"))
    finally:
        await call.end(200)


async def measure(pipeline: Pipeline, calls: int) -> list[float]:
    await one(pipeline, "tools/list", {}, {"tools": [TOOL]})
    params = {"name": "set_cell", "arguments": ARGS}
    result = {"content": [{"type": "text", "text": TEXT}]}
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        await one(pipeline, "tools/call", params, result)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return sorted(samples)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    bare = Pipeline([])
    guarded = Pipeline(content_guards(ContentSettings()))
    for _ in range(2):  # interleave, keep the second round (warm)
        without = await measure(bare, args.calls)
        with_guards = await measure(guarded, args.calls)
    p50a, p50b = statistics.median(without), statistics.median(with_guards)
    for label, samples in (("without", without), ("with", with_guards)):
        p50, p99 = statistics.median(samples), samples[len(samples) * 99 // 100]
        print(f"pipeline {label:7} content guards: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
    print(f"added p50: {(p50b - p50a) / 1000:.3f} ms (target <= 0.15 ms)")


if __name__ == "__main__":
    asyncio.run(main())
