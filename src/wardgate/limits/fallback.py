"""The limits' view of the state store: what to do when the shared store fails.

:class:`FallbackStore` wraps the configured store. When it raises
:class:`~wardgate.state.StateStoreUnavailable`, this replica marks it down for
``retry_seconds`` (so a dead Redis costs one connect timeout per interval, not one per
call) and either lets the error deny the call (``deny``, the default: fail closed) or
answers from a local :class:`~wardgate.state.MemoryStateStore` (``local``: limits then
count per replica). After the interval the next call tries the shared store again, so
the controls recover by themselves. Each change is a ``limits.store`` event.

Keys built from what clients send (subjects, tool names) are escaped by :func:`part`,
so none can close a Redis hash tag or forge a separator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from wardgate.limits.limit_events import LimitsStoreChanged
from wardgate.state.memory import MemoryStateStore
from wardgate.state.store import Clock, StateStore, StateStoreUnavailable, TokenTake
from wardgate.telemetry.events import EventBus

__all__ = ["FallbackStore", "part"]

log = logging.getLogger("wardgate.limits")

_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A", "|": "%7C"})


def part(value: str | None) -> str:
    """One component of a key: escaped, ``-`` when absent."""
    return "-" if value is None else value.translate(_ESCAPES)


class FallbackStore:
    """A :class:`StateStore` that survives the failure of the one it wraps (see module)."""

    def __init__(
        self,
        primary: StateStore,
        *,
        mode: Literal["deny", "local"] = "deny",
        retry_seconds: float = 1.0,
        events: EventBus | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.primary = primary
        self.mode = mode
        self._retry = retry_seconds
        self._events = events or EventBus()
        self._clock = clock
        self._down_until: float | None = None
        self._local: MemoryStateStore | None = MemoryStateStore() if mode == "local" else None

    @property
    def down(self) -> bool:
        return self._down_until is not None

    async def start(self) -> None:
        """Start the shared store; if it does not answer, start down (it may come back)."""
        try:
            await self.primary.start()
        except StateStoreUnavailable as exc:
            self._failed(exc, self._clock())

    async def aclose(self) -> None:
        await self.primary.aclose()
        if self._local is not None:
            await self._local.aclose()

    def _failed(self, exc: StateStoreUnavailable, now: float) -> None:
        if self._down_until is None:
            log.error("limits store unavailable (%s mode): %s", self.mode, exc.detail)
            self._events.emit(LimitsStoreChanged(None, None, "down", self.mode, exc.detail))
        self._down_until = now + self._retry

    async def _do(self, op: str, *args: Any) -> Any:
        now = self._clock()
        if self._down_until is None or now >= self._down_until:
            try:
                result = await getattr(self.primary, op)(*args)
            except StateStoreUnavailable as exc:
                self._failed(exc, now)
                if self._local is None:
                    raise
            else:
                if self._down_until is not None:
                    self._down_until = None
                    log.warning("limits store answers again")
                    self._events.emit(LimitsStoreChanged(None, None, "up", self.mode, ""))
                return result
        if self._local is None:
            raise StateStoreUnavailable("limits store is down (retrying shortly)")
        return await getattr(self._local, op)(*args)

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        return bool(await self._do("add_once", key, ttl_seconds))

    async def take_token(
        self, key: str, rate_per_second: float, burst: int, cost: int = 1
    ) -> TokenTake:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        taken: TokenTake = await self._do("take_token", key, rate_per_second, burst, cost)
        return taken

    async def counters_reserve(
        self,
        tag: str,
        names: Sequence[str],
        amount: int,
        limits: Sequence[int],
        ttl_seconds: float,
    ) -> int:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        return int(await self._do("counters_reserve", tag, names, amount, limits, ttl_seconds))

    async def counters_add(
        self, tag: str, names: Sequence[str], delta: int, ttl_seconds: float
    ) -> None:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        await self._do("counters_add", tag, names, delta, ttl_seconds)

    async def counter_get(self, tag: str, name: str) -> int:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        return int(await self._do("counter_get", tag, name))

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl_seconds: float) -> bool:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        return bool(await self._do("slot_acquire", key, holder, limit, ttl_seconds))

    async def slot_release(self, key: str, holder: str) -> None:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        await self._do("slot_release", key, holder)

    async def window_add(
        self, key: str, counts: Mapping[str, int], window_seconds: float, slices: int = 10
    ) -> dict[str, int]:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        sums: dict[str, int] = await self._do("window_add", key, counts, window_seconds, slices)
        return sums

    async def doc_get(self, key: str) -> dict[str, Any] | None:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        doc: dict[str, Any] | None = await self._do("doc_get", key)
        return doc

    async def doc_put(self, key: str, doc: dict[str, Any], ttl_seconds: float | None) -> None:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        await self._do("doc_put", key, doc, ttl_seconds)

    async def doc_delete(self, key: str) -> None:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        await self._do("doc_delete", key)

    async def now(self) -> float:
        """Raises: StateStoreUnavailable: the store is down in ``deny`` mode."""
        return float(await self._do("now"))
