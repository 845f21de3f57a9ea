"""Shared state for the gateway fleet: one :class:`StateStore` seam, two backends.

:class:`MemoryStateStore` is the embedded default (a single replica);
:class:`RedisStateStore` is shared by all replicas.
"""

from __future__ import annotations

from wardgate.state.memory import MemoryStateStore
from wardgate.state.redis_store import RedisOptions, RedisStateStore
from wardgate.state.store import Clock, StateStore, StateStoreUnavailable, TokenTake

__all__ = [
    "Clock",
    "MemoryStateStore",
    "RedisOptions",
    "RedisStateStore",
    "StateStore",
    "StateStoreUnavailable",
    "TokenTake",
]
