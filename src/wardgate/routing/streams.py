"""Server-to-client streams of several members, merged into one.

:func:`merge_streams` interleaves members' replies as their events arrive (the GET
streams of a handshake session); :func:`subscription_stream` is a 2026
``subscriptions/listen`` stream merged from the members' own: one acknowledgement first,
then their notifications retagged with the client's subscription id
(:func:`relay_subscription`), then one final result once every member's stream ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from wardgate.routing.federation import SUBSCRIPTION_ID
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject

__all__ = ["merge_streams", "relay_subscription", "subscription_stream"]


async def relay_subscription(reply: Reply, sub_id: Any) -> AsyncIterator[Event]:
    """A member's listen stream after its acknowledgement: its notifications, retagged
    with the client's subscription id (its final response only ends it)."""
    async for event in reply.events:
        raw = event.message
        if raw is None or "method" not in raw or "id" in raw:
            continue  # keep-alives; the member's final response; no server requests in 2026
        params = raw.get("params")
        params = params if isinstance(params, dict) else {}
        meta = params.get("_meta")
        meta = (
            {**meta, SUBSCRIPTION_ID: sub_id}
            if isinstance(meta, dict)
            else {SUBSCRIPTION_ID: sub_id}
        )
        yield Event({**raw, "params": {**params, "_meta": meta}})


async def subscription_stream(
    streams: Sequence[tuple[int, Reply]], ack: JsonObject, sub_id: Any
) -> AsyncIterator[Event]:
    """The merged listen stream: one acknowledgement, the members' notifications as
    they come, and one final result once every member's stream has ended."""
    try:
        yield Event(ack)
        async for event in merge_streams(
            [(i, Reply(relay_subscription(r, sub_id))) for i, r in streams]
        ):
            yield event
        yield Event(
            {
                "jsonrpc": "2.0",
                "id": sub_id,
                "result": {"resultType": "complete", "_meta": {SUBSCRIPTION_ID: sub_id}},
            }
        )
    finally:
        for _, reply in streams:
            await reply.aclose()


async def merge_streams(replies: Sequence[tuple[int, Reply]]) -> AsyncIterator[Event]:
    """Interleave several upstream streams into one, as events arrive."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=256)

    async def pump(reply: Reply) -> None:
        try:
            async for event in reply.events:
                await queue.put(event)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(reply)) for _, reply in replies]
    remaining = len(tasks)
    try:
        while remaining:
            event = await queue.get()
            if event is None:
                remaining -= 1
                continue
            yield event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
