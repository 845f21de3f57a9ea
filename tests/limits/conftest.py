"""Shared pieces of the limits tests: the real Redis under a key prefix of the test's
own, the test upstream, and a small tools/call helper over real HTTP."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from support.http import modern_body, modern_headers, post

REDIS_URL = "redis://127.0.0.1:6379/0"
SERVER = [sys.executable, str(Path(__file__).parent / "limits_server.py")]


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gateway_config(limits: dict[str, Any], **route: Any) -> dict[str, Any]:
    return {
        "upstreams": {"lim": {"transport": "stdio", "command": SERVER, "sandbox": "insecure-none"}},
        "routes": {"lim": {"upstreams": ["lim"], **route}},
        "limits": limits,
    }


async def call_tool(
    base: str, name: str, arguments: dict[str, Any] | None = None, request_id: int = 1
) -> tuple[int, dict[str, str], Any]:
    body = modern_body("tools/call", {"name": name, "arguments": arguments or {}}, request_id)
    return await post(f"{base}/mcp/lim", body, modern_headers("tools/call", name))


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"wardgate-test:{uuid.uuid4().hex}:"
    yield prefix
    raw = Redis.from_url(REDIS_URL)
    keys = [k async for k in raw.scan_iter(match=prefix + "*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


def make_call(
    pipeline: Any,
    tool: str = "query",
    arguments: dict[str, Any] | None = None,
    *,
    subject: str = "alice",
    tenant: str | None = "acme",
    upstream: str = "lim",
    request_id: int = 1,
) -> Any:
    """A tools/call as the route would hand it to the pipeline (for guard-level tests)."""
    from wardgate.core.context import CallContext
    from wardgate.identity.principal import Principal
    from wardgate.wire.jsonrpc import Message

    ctx = CallContext(
        "lim",
        principal=Principal(subject=subject, method="jwt", tenant=tenant),
        upstream=upstream,
        target=tool,
        client_addr="127.0.0.1",
    )
    raw = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }
    return pipeline.call(ctx, Message(raw, "request"))


def result_message(request_id: int = 1, meta: dict[str, Any] | None = None) -> Any:
    from wardgate.wire.jsonrpc import Message

    result: dict[str, Any] = {"content": []}
    if meta is not None:
        result["_meta"] = meta
    return Message({"jsonrpc": "2.0", "id": request_id, "result": result}, "response")
