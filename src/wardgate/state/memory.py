"""In-process state store: the default when no Redis is configured (one replica only).

Every operation runs without an ``await`` in between, so under one event loop each is
atomic, as its Redis script is. Time is the injected clock (tests need no sleeps).

Documents are copied in and out, so no caller can change what another reads (as with
Redis, where they travel as JSON). A flat document of scalars, the common case, is
copied shallowly: its values are immutable, so that copy isolates as fully as a deep one
at a fraction of the cost; anything nested is deep-copied.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from wardgate.state.store import (
    Clock,
    StateStoreUnavailable,
    TokenTake,
    check_add_once_args,
    check_bucket,
    check_key,
    check_ttl,
)

__all__ = ["MemoryStateStore"]

_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """An independent copy of a document (see the module docstring)."""
    scalars = _SCALARS
    for value in doc.values():
        if type(value) not in scalars:
            copied: dict[str, Any] = copy.deepcopy(doc)
            return copied
    return dict(doc)


class MemoryStateStore:
    """A bounded, expiring in-memory :class:`~wardgate.state.StateStore`.

    When full of live keys it refuses new ones (raises) rather than evicting a live
    key: evicting a replay-cache entry would let that replay through, evicting a
    bucket would hand out a fresh burst.
    """

    def __init__(self, *, max_keys: int = 100_000, clock: Clock = time.monotonic) -> None:
        """Create an empty store.

        Raises:
            ValueError: ``max_keys`` is not positive.
        """
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self._max_keys = max_keys
        self._clock = clock
        self._expiry: dict[str, float] = {}
        # (expires_at, key); may hold stale entries for keys re-added later.
        self._heap: list[tuple[float, str]] = []
        # Values of keys other than add_once's; their expiry is in ``_expiry`` too.
        self._values: dict[str, Any] = {}

    async def start(self) -> None:
        """Nothing to connect; present for the lifecycle contract."""

    async def aclose(self) -> None:
        """Forget everything."""
        self._expiry.clear()
        self._heap.clear()
        self._values.clear()

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._expiry)

    # -- expiry bookkeeping ---------------------------------------------------------

    def _live(self, key: str, now: float) -> bool:
        self._purge(now)
        return key in self._expiry

    def _set(self, key: str, value: Any, expires_at: float) -> None:
        if key not in self._expiry and len(self._expiry) >= self._max_keys:
            raise StateStoreUnavailable(f"memory state store full ({self._max_keys} live keys)")
        self._expiry[key] = expires_at
        self._values[key] = value
        if expires_at != math.inf:
            heapq.heappush(self._heap, (expires_at, key))

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if expiry.get(key) == expires_at:
                del expiry[key]
                self._values.pop(key, None)

    # -- operations --------------------------------------------------------------------

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """Record ``key`` unless present and unexpired.

        Raises:
            StateStoreUnavailable: the store is full of unexpired keys (fail closed).
            ValueError: bad ``key`` or ``ttl_seconds``.
        """
        check_add_once_args(key, ttl_seconds)
        now = self._clock()
        if self._live(key, now):
            return False
        self._set(key, None, now + ttl_seconds)
        return True

    async def take_token(
        self, key: str, rate_per_second: float, burst: int, cost: int = 1
    ) -> TokenTake:
        """See :meth:`StateStore.take_token`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(key)
        check_bucket(rate_per_second, burst, cost)
        now = self._clock()
        k = "tb:" + key
        if self._live(k, now):
            tokens, stamp = self._values[k]
            tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate_per_second)
        else:
            tokens = float(burst)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        # A full bucket needs no key: it expires once it would have refilled.
        self._set(k, (tokens, now), now + (burst - tokens) / rate_per_second + 1.0)
        retry = 0.0 if allowed else (cost - tokens) / rate_per_second
        return TokenTake(allowed, retry, int(tokens))

    def _counter(self, key: str, now: float) -> int:
        return int(self._values[key]) if self._live(key, now) else 0

    async def counters_reserve(
        self,
        tag: str,
        names: Sequence[str],
        amount: int,
        limits: Sequence[int],
        ttl_seconds: float,
    ) -> int:
        """See :meth:`StateStore.counters_reserve`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(tag)
        check_ttl(ttl_seconds)
        if len(names) != len(limits):
            raise ValueError("names and limits differ in length")
        now = self._clock()
        keys = [f"ct:{tag}:{n}" for n in names]
        for i, (k, limit) in enumerate(zip(keys, limits, strict=True)):
            if self._counter(k, now) + amount > limit:
                return i
        for k in keys:
            self._set(k, self._counter(k, now) + amount, now + ttl_seconds)
        return -1

    async def counters_add(
        self, tag: str, names: Sequence[str], delta: int, ttl_seconds: float
    ) -> None:
        """See :meth:`StateStore.counters_add`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(tag)
        check_ttl(ttl_seconds)
        now = self._clock()
        for n in names:
            k = f"ct:{tag}:{n}"
            self._set(k, self._counter(k, now) + delta, now + ttl_seconds)

    async def counter_get(self, tag: str, name: str) -> int:
        """See :meth:`StateStore.counter_get`."""
        return self._counter(f"ct:{tag}:{name}", self._clock())

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl_seconds: float) -> bool:
        """See :meth:`StateStore.slot_acquire`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(key)
        check_ttl(ttl_seconds)
        now = self._clock()
        k = "sl:" + key
        slots: dict[str, float] = dict(self._values[k]) if self._live(k, now) else {}
        slots = {h: t for h, t in slots.items() if t > now}
        if holder not in slots and len(slots) >= limit:
            return False
        slots[holder] = now + ttl_seconds
        self._set(k, slots, max(slots.values()))
        return True

    async def slot_release(self, key: str, holder: str) -> None:
        """See :meth:`StateStore.slot_release`."""
        check_key(key)
        now = self._clock()
        k = "sl:" + key
        if self._live(k, now):
            self._values[k].pop(holder, None)

    async def window_add(
        self, key: str, counts: Mapping[str, int], window_seconds: float, slices: int = 10
    ) -> dict[str, int]:
        """See :meth:`StateStore.window_add`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(key)
        check_ttl(window_seconds)
        if slices < 1:
            raise ValueError("slices must be at least 1")
        now = self._clock()
        k = "sw:" + key
        current = math.floor(now / (window_seconds / slices))
        window: dict[int, dict[str, int]] = dict(self._values[k]) if self._live(k, now) else {}
        window = {i: c for i, c in window.items() if i > current - slices}
        here = dict(window.get(current, {}))
        for name, n in counts.items():
            here[name] = here.get(name, 0) + n
        window[current] = here
        self._set(k, window, now + window_seconds + 1.0)
        sums: dict[str, int] = {}
        for slice_counts in window.values():
            for name, n in slice_counts.items():
                sums[name] = sums.get(name, 0) + n
        return sums

    async def doc_get(self, key: str) -> dict[str, Any] | None:
        """See :meth:`StateStore.doc_get`."""
        check_key(key)
        k = "dc:" + key
        if not self._live(k, self._clock()):
            return None
        return _copy_doc(self._values[k])

    async def doc_put(self, key: str, doc: dict[str, Any], ttl_seconds: float | None) -> None:
        """See :meth:`StateStore.doc_put`.

        Raises:
            StateStoreUnavailable: the store is full.
            ValueError: bad arguments.
        """
        check_key(key)
        now = self._clock()
        if ttl_seconds is not None:
            check_ttl(ttl_seconds)
        k = "dc:" + key
        self._live(k, now)
        self._set(k, _copy_doc(doc), math.inf if ttl_seconds is None else now + ttl_seconds)

    async def doc_delete(self, key: str) -> None:
        """See :meth:`StateStore.doc_delete`."""
        check_key(key)
        k = "dc:" + key
        self._expiry.pop(k, None)
        self._values.pop(k, None)

    async def now(self) -> float:
        """The injected clock."""
        return self._clock()
