"""Redis state store: shared by every replica of the gateway fleet.

Every redis-py exception is translated to :class:`StateStoreUnavailable` in
:func:`_redis_errors`, the one boundary for this backend, so callers fail closed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from wardgate.errors import ConfigError
from wardgate.state.store import StateStoreUnavailable, check_add_once_args

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStateStore"]


@contextmanager
def _redis_errors(operation: str) -> Iterator[None]:
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise StateStoreUnavailable(
            f"redis {operation} failed: {type(exc).__name__}: {exc}"
        ) from exc


class RedisStateStore:
    """A :class:`~wardgate.state.StateStore` on Redis (``redis.asyncio``).

    ``add_once`` is a single ``SET key 1 NX PX ttl``: atomic across replicas.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "wardgate:",
        socket_timeout: float = 1.0,
        client: Redis | None = None,
    ) -> None:
        """Remember the settings; no I/O until :meth:`start`.

        ``client`` lets the caller share an existing connection pool; the store then
        does not close it.

        Raises:
            ConfigError: ``key_prefix`` is empty or ``socket_timeout`` not positive.
        """
        if not key_prefix:
            raise ConfigError("state.redis.key_prefix must not be empty")
        if socket_timeout <= 0:
            raise ConfigError("state.redis.socket_timeout must be positive")
        self._url = url
        self._prefix = key_prefix
        self._socket_timeout = socket_timeout
        self._client: Redis | None = client
        self._owns_client = client is None

    @property
    def key_prefix(self) -> str:
        return self._prefix

    async def start(self) -> None:
        """Create the client and ``PING`` the server.

        Raises:
            ConfigError: the ``redis`` package is missing (install ``wardgate[redis]``).
            StateStoreUnavailable: Redis does not answer.
        """
        if self._client is None:
            try:
                from redis.asyncio import Redis
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigError(
                    "state backend 'redis' needs the redis package: pip install 'wardgate[redis]'"
                ) from exc
            with _redis_errors("connect"):
                self._client = Redis.from_url(
                    self._url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                )
        with _redis_errors("ping"):
            await self._client.ping()

    async def aclose(self) -> None:
        """Close the client if this store created it; idempotent."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            with _redis_errors("close"):
                await client.aclose()

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """``SET prefix+key 1 NX PX ttl``; True if the key was new.

        Raises:
            StateStoreUnavailable: Redis failed or the store was not started.
            ValueError: bad ``key`` or ``ttl_seconds``.
        """
        check_add_once_args(key, ttl_seconds)
        client = self._client
        if client is None:
            raise StateStoreUnavailable("redis state store used before start()")
        ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        with _redis_errors("SET NX"):
            result = await client.set(self._prefix + key, b"1", nx=True, px=ttl_ms)
        return bool(result)
