"""Fixtures the fleet tests share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ._fleet import REDIS_URL


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own on the real Redis, emptied afterwards."""
    prefix = f"wardgate-fleet-test:{uuid.uuid4().hex}:"
    yield prefix
    raw = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()
