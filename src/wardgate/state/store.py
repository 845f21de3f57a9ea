"""The state-store seam: small shared facts that every gateway replica must agree on.

The DPoP replay cache uses ``add_once``; the abuse controls (``wardgate.limits``) use
token buckets, counters, concurrency slots, sample windows and small documents. Each
operation is one atomic decision: one Lua script (one round trip) on Redis, one step
under the event loop in memory. Times inside the store are the store's own clock
(Redis ``TIME``, or the injected clock in memory) so replicas with skewed clocks agree.

Error tree (a leaf of :class:`wardgate.errors.WardgateError`)::

    WardgateError
    └── StateStoreUnavailable   wardgate.state_unavailable  -32603  503
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from wardgate.errors import WardgateError

__all__ = [
    "Clock",
    "StateStore",
    "StateStoreUnavailable",
    "TokenTake",
    "check_add_once_args",
    "check_bucket",
    "check_key",
    "check_ttl",
]

Clock = Callable[[], float]
"""Returns seconds; only differences matter (``time.monotonic`` by default)."""


class StateStoreUnavailable(WardgateError):
    """The state store could not answer; callers deny (fail closed)."""

    code: ClassVar[str] = "wardgate.state_unavailable"
    http_status: ClassVar[int] = 503
    public_message: ClassVar[str] = "Service unavailable"


@dataclass(frozen=True, slots=True)
class TokenTake:
    """The answer of :meth:`StateStore.take_token`.

    ``retry_after`` is how long until the bucket holds the tokens asked for (0 when
    allowed); ``remaining`` the whole tokens left after the decision.
    """

    allowed: bool
    retry_after: float
    remaining: int


@runtime_checkable
class StateStore(Protocol):
    """Shared, expiring facts.

    Lifecycle: construction does no I/O; ``start()`` connects and validates;
    ``aclose()`` releases. Every method may raise :class:`StateStoreUnavailable`
    and :class:`ValueError` (empty key, non-positive ttl or rate).
    """

    async def start(self) -> None:
        """Connect and check that the store answers.

        Raises:
            StateStoreUnavailable: the backend cannot be reached.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; idempotent."""
        ...

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """Record ``key`` for ``ttl_seconds`` if it is not already recorded.

        Returns:
            True if the key was new (first use), False if it was already present.

        Raises:
            StateStoreUnavailable: the backend failed; the caller must deny.
            ValueError: ``ttl_seconds`` is not positive or ``key`` is empty.
        """
        ...

    async def take_token(
        self, key: str, rate_per_second: float, burst: int, cost: int = 1
    ) -> TokenTake:
        """Take ``cost`` tokens from the bucket ``key`` (capacity ``burst``, refilled
        at ``rate_per_second``), or take none and say how long to wait.

        Raises:
            StateStoreUnavailable: the backend failed.
            ValueError: bad key, rate, burst or cost.
        """
        ...

    async def counters_reserve(
        self,
        tag: str,
        names: Sequence[str],
        amount: int,
        limits: Sequence[int],
        ttl_seconds: float,
    ) -> int:
        """Add ``amount`` to every counter ``names[i]`` if none would pass ``limits[i]``.

        All or nothing. The counters share the hash tag ``tag`` (one Redis Cluster slot).

        Returns:
            -1 if reserved, else the index of the first counter that would overflow.

        Raises:
            StateStoreUnavailable: the backend failed.
            ValueError: bad key, ttl, or ``names`` and ``limits`` of unequal length.
        """
        ...

    async def counters_add(
        self, tag: str, names: Sequence[str], delta: int, ttl_seconds: float
    ) -> None:
        """Add ``delta`` (may be negative) to every counter, unconditionally.

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def counter_get(self, tag: str, name: str) -> int:
        """The counter's value (0 when absent).

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl_seconds: float) -> bool:
        """Take one of ``limit`` slots for ``holder``; slots expire after ``ttl_seconds``
        (so a crashed replica's slots come back).

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def slot_release(self, key: str, holder: str) -> None:
        """Give back ``holder``'s slot (nothing if it has none).

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def window_add(
        self, key: str, counts: Mapping[str, int], window_seconds: float, slices: int = 10
    ) -> dict[str, int]:
        """Add ``counts`` to the current slice of a sliding window and return each
        count's sum over the window (the current slice and the ``slices - 1`` before it,
        each ``window_seconds / slices`` long). Constant work, whatever the traffic.

        Raises:
            StateStoreUnavailable: the backend failed.
            ValueError: bad key, window or slices.
        """
        ...

    async def doc_get(self, key: str) -> dict[str, Any] | None:
        """A small JSON document, or ``None``.

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def doc_put(self, key: str, doc: dict[str, Any], ttl_seconds: float | None) -> None:
        """Store a small JSON document (replacing any), expiring after ``ttl_seconds``.

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def doc_delete(self, key: str) -> None:
        """Forget a document.

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...

    async def now(self) -> float:
        """The store's clock in seconds (Redis ``TIME``; the injected clock in memory).

        Raises:
            StateStoreUnavailable: the backend failed.
        """
        ...


def check_key(key: str) -> None:
    """Raises:
    ValueError: on an empty key.
    """
    if not key:
        raise ValueError("state key must not be empty")


def check_ttl(ttl_seconds: float) -> None:
    """Raises:
    ValueError: on a non-positive or non-finite ttl.
    """
    if not (ttl_seconds > 0 and ttl_seconds < float("inf")):
        raise ValueError(f"ttl_seconds must be positive and finite, got {ttl_seconds!r}")


def check_add_once_args(key: str, ttl_seconds: float) -> None:
    """Shared argument check for ``add_once`` implementations.

    Raises:
        ValueError: on an empty key or a non-positive / non-finite ttl.
    """
    check_key(key)
    check_ttl(ttl_seconds)


def check_bucket(rate_per_second: float, burst: int, cost: int) -> None:
    """Raises:
    ValueError: on a non-positive rate, burst or cost, or a cost above the burst.
    """
    if not (rate_per_second > 0 and rate_per_second < float("inf")):
        raise ValueError("rate_per_second must be positive and finite")
    if burst < 1 or cost < 1:
        raise ValueError("burst and cost must be at least 1")
    if cost > burst:
        raise ValueError("cost must not exceed burst")
