"""In-process state store: the default when no Redis is configured (one replica only)."""

from __future__ import annotations

import heapq
import time

from wardgate.state.store import Clock, StateStoreUnavailable, check_add_once_args

__all__ = ["MemoryStateStore"]


class MemoryStateStore:
    """A bounded, expiring in-memory :class:`~wardgate.state.StateStore`.

    When full of live keys it refuses new ones (raises) rather than evicting a live
    key: evicting a replay-cache entry would let that replay through.
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

    async def start(self) -> None:
        """Nothing to connect; present for the lifecycle contract."""

    async def aclose(self) -> None:
        """Forget everything."""
        self._expiry.clear()
        self._heap.clear()

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._expiry)

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """Record ``key`` unless present and unexpired.

        Raises:
            StateStoreUnavailable: the store is full of unexpired keys (fail closed).
            ValueError: bad ``key`` or ``ttl_seconds``.
        """
        check_add_once_args(key, ttl_seconds)
        now = self._clock()
        self._purge(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self._max_keys:
            raise StateStoreUnavailable(f"memory state store full ({self._max_keys} live keys)")
        expires_at = now + ttl_seconds
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            if expiry.get(key) == expires_at:
                del expiry[key]
