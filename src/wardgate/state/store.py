"""The state-store seam: small shared facts that every gateway replica must agree on.

The first user is the DPoP replay cache (``add_once``); token buckets, quotas and
pins join later through the same seam.

Error tree (a leaf of :class:`wardgate.errors.WardgateError`)::

    WardgateError
    └── StateStoreUnavailable   wardgate.state_unavailable  -32603  503
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

from wardgate.errors import WardgateError

__all__ = ["Clock", "StateStore", "StateStoreUnavailable"]

Clock = Callable[[], float]
"""Returns seconds; only differences matter (``time.monotonic`` by default)."""


class StateStoreUnavailable(WardgateError):
    """The state store could not answer; callers deny (fail closed)."""

    code: ClassVar[str] = "wardgate.state_unavailable"
    http_status: ClassVar[int] = 503
    public_message: ClassVar[str] = "Service unavailable"


@runtime_checkable
class StateStore(Protocol):
    """Shared, expiring facts.

    Lifecycle: construction does no I/O; ``start()`` connects and validates;
    ``aclose()`` releases. Every method may raise :class:`StateStoreUnavailable`.
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


def check_add_once_args(key: str, ttl_seconds: float) -> None:
    """Shared argument check for ``add_once`` implementations.

    Raises:
        ValueError: on an empty key or a non-positive / non-finite ttl.
    """
    if not key:
        raise ValueError("state key must not be empty")
    if not (ttl_seconds > 0 and ttl_seconds < float("inf")):
        raise ValueError(f"ttl_seconds must be positive and finite, got {ttl_seconds!r}")
