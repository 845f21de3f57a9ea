"""Driving stdio upstreams at the channel level: no gateway, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from wardgate.identity.principal import Principal
from wardgate.routing.isolation import Isolation, isolation_key
from wardgate.upstream.sandbox import PlainProcessRunner
from wardgate.upstream.seam import Event, Reply, UpstreamSession
from wardgate.upstream.stdio import StdioUpstream

RAW = [sys.executable, str(Path(__file__).parent / "raw_server.py")]
BOUND = 10.0  # every wait in these tests is bounded by this


def principal(subject: str, tenant: str | None = None) -> Principal:
    return Principal(subject=subject, method="jwt", tenant=tenant, issuer="https://idp.test")


def key(subject: str, mode: Isolation = "shared", tenant: str | None = None) -> str:
    return isolation_key(principal(subject, tenant), mode)


def raw_upstream(**kwargs: Any) -> StdioUpstream:
    return StdioUpstream("raw", RAW, PlainProcessRunner(), **kwargs)


def tool(request_id: int | str, name: str, token: Any = None, **arguments: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def cancel(request_id: int | str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": "test"},
    }


async def call(session: UpstreamSession, request_id: int | str, name: str, **kw: Any) -> Reply:
    return await asyncio.wait_for(session.request(tool(request_id, name, **kw), {}), BOUND)


async def next_event(reply: Reply) -> Event:
    return await asyncio.wait_for(anext(reply.events), BOUND)


async def rest(reply: Reply) -> list[dict[str, Any]]:
    """Every remaining message of a reply, the final response last."""

    async def drain() -> list[dict[str, Any]]:
        return [e.message async for e in reply.events if e.message is not None]

    return await asyncio.wait_for(drain(), BOUND)


async def answer(session: UpstreamSession, request_id: int | str, name: str, **kw: Any) -> Any:
    """Call a tool and return its final response."""
    messages = await rest(await call(session, request_id, name, **kw))
    return messages[-1]


def text_of(response: dict[str, Any]) -> str:
    return str(response["result"]["content"][0]["text"])


async def status(session: UpstreamSession) -> dict[str, Any]:
    response = await answer(session, "status-probe", "status")
    return dict(response["result"])


async def eventually(predicate: Any, timeout: float = BOUND) -> None:
    """Wait until ``predicate()`` holds, checking on every loop turn (bounded)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


@contextlib.asynccontextmanager
async def started(upstream: StdioUpstream) -> AsyncIterator[StdioUpstream]:
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.aclose()


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies run nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found
