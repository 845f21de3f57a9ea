"""Redis state store: shared by every replica of the gateway fleet.

Every decision is one Lua script (``EVALSHA``, one round trip; ``EVAL`` once after a
``NOSCRIPT``), so it is atomic across replicas, and takes its time from Redis ``TIME``
so that replica clocks do not matter. Keys are ``prefix + "{" + key + "}"``: the prefix
names the deployment, and the hash tag keeps every key a script touches in one Redis
Cluster slot. Every redis-py exception is translated to :class:`StateStoreUnavailable`
in :func:`_redis_errors`, the one boundary for this backend, so callers fail closed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import orjson

from wardgate.errors import ConfigError
from wardgate.state.store import (
    StateStoreUnavailable,
    TokenTake,
    check_add_once_args,
    check_bucket,
    check_key,
    check_ttl,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["RedisOptions", "RedisStateStore"]


_FOREIGN: tuple[type[BaseException], ...] = ()


def _foreign() -> tuple[type[BaseException], ...]:
    """The exceptions this backend translates (redis is imported on first use only)."""
    global _FOREIGN
    if not _FOREIGN:
        from redis.exceptions import RedisError

        _FOREIGN = (RedisError, OSError, TimeoutError)
    return _FOREIGN


class _redis_errors:
    """The one boundary: any redis-py, socket or timeout error leaves as
    :class:`StateStoreUnavailable`. A class rather than ``@contextmanager``: it is on
    every decision's path and costs a fraction of a generator-based one."""

    __slots__ = ("operation",)

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, _foreign()):
            raise StateStoreUnavailable(
                f"redis {self.operation} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return False


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Connection options beyond the URL (TLS needs a ``rediss://`` URL)."""

    username: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_connections: int = 64
    cluster: bool = False


_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "

# The bucket as GCRA (the generic cell rate algorithm, equivalent to a token bucket of
# ``burst`` tokens refilled at ``rate``): one number, the time at which the bucket will
# be full again, so one GET and one SET with PX and no parsing. The answer is one
# integer, the cheapest reply to parse: the whole tokens left when allowed, else
# -(microseconds until the tokens are there) - 1.
_TAKE_TOKEN = (
    _NOW
    + """
local interval = 1 / tonumber(ARGV[1])
local span = tonumber(ARGV[2]) * interval
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local after = tat + tonumber(ARGV[3]) * interval
if after - now <= span then
  local px = math.ceil((after - now) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.17g', after), 'PX', px)
  return math.floor((span - (after - now)) / interval + 1e-9)
end
return -math.ceil((after - now - span) * 1000000) - 1
"""
)

_COUNTERS_RESERVE = """
local amount = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') + amount > tonumber(ARGV[i + 2]) then return i - 1 end
end
for _, k in ipairs(KEYS) do
  redis.call('INCRBY', k, amount) redis.call('PEXPIRE', k, ARGV[2])
end
return -1
"""

_COUNTERS_ADD = """
for _, k in ipairs(KEYS) do
  redis.call('INCRBY', k, ARGV[1]) redis.call('PEXPIRE', k, ARGV[2])
end
return 0
"""

_SLOT_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
  return 1
end
return 0
"""
)

# One hash per window: field "<slice>:<name>" per count; slices older than the window
# are deleted as they are met. At most (slices + 1) x names fields: constant work.
_WINDOW_ADD = (
    _NOW
    + """
local width = tonumber(ARGV[1]) / tonumber(ARGV[2])
local current = math.floor(now / width)
local oldest = current - tonumber(ARGV[2]) + 1
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], string.format('%d', current) .. ':' .. ARGV[i], ARGV[i + 1])
end
local all = redis.call('HGETALL', KEYS[1])
local sums = {}
for i = 1, #all, 2 do
  local f = all[i]
  local sep = string.find(f, ':', 1, true)
  if tonumber(string.sub(f, 1, sep - 1)) < oldest then
    redis.call('HDEL', KEYS[1], f)
  else
    local name = string.sub(f, sep + 1)
    sums[name] = (sums[name] or 0) + tonumber(all[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
local out = {}
for name, n in pairs(sums) do out[#out + 1] = name out[#out + 1] = n end
return out
"""
)


class _Script:
    """A Lua script run by SHA (one round trip), loaded again after a ``NOSCRIPT``."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's id

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except Exception as exc:
            from redis.exceptions import NoScriptError

            if not isinstance(exc, NoScriptError):
                raise
            return await client.eval(self.source, len(keys), *keys, *args)


_SCRIPTS = {
    name: _Script(src)
    for name, src in (
        ("take_token", _TAKE_TOKEN),
        ("counters_reserve", _COUNTERS_RESERVE),
        ("counters_add", _COUNTERS_ADD),
        ("slot_acquire", _SLOT_ACQUIRE),
        ("window_add", _WINDOW_ADD),
    )
}


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStateStore:
    """A :class:`~wardgate.state.StateStore` on Redis (``redis.asyncio``).

    ``add_once`` is a single ``SET key 1 NX PX ttl``; the other decisions are scripts.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "wardgate:",
        socket_timeout: float = 1.0,
        client: Redis | RedisCluster | None = None,
        options: RedisOptions | None = None,
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
        self._options = options or RedisOptions()
        self._client: Redis | RedisCluster | None = client
        self._owns_client = client is None

    @property
    def key_prefix(self) -> str:
        return self._prefix

    def key(self, key: str) -> str:
        """The Redis key for a logical key: deployment prefix, then the hash-tagged key."""
        return f"{self._prefix}{{{key}}}"

    def _connection_kwargs(self) -> dict[str, Any]:
        o = self._options
        kwargs: dict[str, Any] = {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._socket_timeout,
            "max_connections": o.max_connections,
        }
        if o.username is not None:
            kwargs["username"] = o.username
        if o.password is not None:
            kwargs["password"] = o.password
        if self._url.startswith("rediss://"):
            kwargs.update(
                ssl_ca_certs=o.tls_ca_file, ssl_certfile=o.tls_cert_file, ssl_keyfile=o.tls_key_file
            )
        return kwargs

    async def start(self) -> None:
        """Create the client (a pool of connections) and ``PING`` the server.

        Raises:
            ConfigError: the ``redis`` package is missing (install ``wardgate[redis]``).
            StateStoreUnavailable: Redis does not answer.
        """
        if self._client is None:
            try:
                from redis.asyncio import Redis
                from redis.asyncio.cluster import RedisCluster
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigError(
                    "state backend 'redis' needs the redis package: pip install 'wardgate[redis]'"
                ) from exc
            with _redis_errors("connect"):
                kwargs = self._connection_kwargs()
                if self._options.cluster:
                    kwargs.pop("max_connections")
                    self._client = RedisCluster.from_url(self._url, **kwargs)
                else:
                    self._client = Redis.from_url(self._url, **kwargs)
        with _redis_errors("ping"):
            await self._client.ping()

    async def aclose(self) -> None:
        """Close the client if this store created it; idempotent."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            with _redis_errors("close"):
                await client.aclose()

    def _live(self) -> Redis | RedisCluster:
        client = self._client
        if client is None:
            raise StateStoreUnavailable("redis state store used before start()")
        return client

    async def add_once(self, key: str, ttl_seconds: float) -> bool:
        """``SET prefix+key 1 NX PX ttl``; True if the key was new.

        Raises:
            StateStoreUnavailable: Redis failed or the store was not started.
            ValueError: bad ``key`` or ``ttl_seconds``.
        """
        check_add_once_args(key, ttl_seconds)
        client = self._live()
        with _redis_errors("SET NX"):
            result = await client.set(self._prefix + key, b"1", nx=True, px=_ms(ttl_seconds))
        return bool(result)

    async def take_token(
        self, key: str, rate_per_second: float, burst: int, cost: int = 1
    ) -> TokenTake:
        """See :meth:`StateStore.take_token`: one script, one round trip.

        Raises:
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(key)
        check_bucket(rate_per_second, burst, cost)
        client = self._live()
        with _redis_errors("take_token"):
            found = int(
                await _SCRIPTS["take_token"](
                    client, (self.key(key),), (repr(rate_per_second), burst, cost)
                )
            )
        if found >= 0:
            return TokenTake(True, 0.0, found)
        return TokenTake(False, (-found - 1) / 1e6, 0)

    def _counter_keys(self, tag: str, names: Sequence[str]) -> list[str]:
        return [f"{self._prefix}{{{tag}}}:{n}" for n in names]

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
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(tag)
        check_ttl(ttl_seconds)
        if len(names) != len(limits):
            raise ValueError("names and limits differ in length")
        client = self._live()
        with _redis_errors("counters_reserve"):
            found = await _SCRIPTS["counters_reserve"](
                client,
                self._counter_keys(tag, names),
                (int(amount), _ms(ttl_seconds), *(int(x) for x in limits)),
            )
        return int(found)

    async def counters_add(
        self, tag: str, names: Sequence[str], delta: int, ttl_seconds: float
    ) -> None:
        """See :meth:`StateStore.counters_add`.

        Raises:
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(tag)
        check_ttl(ttl_seconds)
        client = self._live()
        with _redis_errors("counters_add"):
            await _SCRIPTS["counters_add"](
                client, self._counter_keys(tag, names), (int(delta), _ms(ttl_seconds))
            )

    async def counter_get(self, tag: str, name: str) -> int:
        """See :meth:`StateStore.counter_get`.

        Raises:
            StateStoreUnavailable: Redis failed.
        """
        check_key(tag)
        client = self._live()
        with _redis_errors("GET"):
            value = await client.get(self._counter_keys(tag, (name,))[0])
        return int(value or 0)

    async def slot_acquire(self, key: str, holder: str, limit: int, ttl_seconds: float) -> bool:
        """See :meth:`StateStore.slot_acquire`.

        Raises:
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(key)
        check_ttl(ttl_seconds)
        client = self._live()
        with _redis_errors("slot_acquire"):
            got = await _SCRIPTS["slot_acquire"](
                client, (self.key(key),), (holder, int(limit), repr(float(ttl_seconds)))
            )
        return bool(got)

    async def slot_release(self, key: str, holder: str) -> None:
        """See :meth:`StateStore.slot_release`.

        Raises:
            StateStoreUnavailable: Redis failed.
        """
        check_key(key)
        client = self._live()
        with _redis_errors("ZREM"):
            await client.zrem(self.key(key), holder)

    async def window_add(
        self, key: str, counts: Mapping[str, int], window_seconds: float, slices: int = 10
    ) -> dict[str, int]:
        """See :meth:`StateStore.window_add`.

        Raises:
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(key)
        check_ttl(window_seconds)
        if slices < 1:
            raise ValueError("slices must be at least 1")
        client = self._live()
        args: list[Any] = [repr(float(window_seconds)), int(slices)]
        for name, n in counts.items():
            if ":" in name:
                raise ValueError("count names must not contain ':'")
            args += [name, int(n)]
        with _redis_errors("window_add"):
            found = await _SCRIPTS["window_add"](client, (self.key(key),), args)
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in found[::2]]
        return dict(zip(names, (int(n) for n in found[1::2]), strict=True))

    async def doc_get(self, key: str) -> dict[str, Any] | None:
        """See :meth:`StateStore.doc_get`.

        Raises:
            StateStoreUnavailable: Redis failed or the document is not JSON.
        """
        check_key(key)
        client = self._live()
        with _redis_errors("GET"):
            raw = await client.get(self.key(key))
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise StateStoreUnavailable(f"document {key!r} is not JSON") from exc
        if not isinstance(doc, dict):
            raise StateStoreUnavailable(f"document {key!r} is not a JSON object")
        return doc

    async def doc_put(self, key: str, doc: dict[str, Any], ttl_seconds: float | None) -> None:
        """See :meth:`StateStore.doc_put`.

        Raises:
            StateStoreUnavailable: Redis failed.
            ValueError: bad arguments.
        """
        check_key(key)
        if ttl_seconds is not None:
            check_ttl(ttl_seconds)
        client = self._live()
        px = None if ttl_seconds is None else _ms(ttl_seconds)
        with _redis_errors("SET"):
            await client.set(self.key(key), orjson.dumps(doc), px=px)

    async def doc_delete(self, key: str) -> None:
        """See :meth:`StateStore.doc_delete`.

        Raises:
            StateStoreUnavailable: Redis failed.
        """
        check_key(key)
        client = self._live()
        with _redis_errors("DEL"):
            await client.delete(self.key(key))

    async def now(self) -> float:
        """Redis ``TIME`` in seconds.

        Raises:
            StateStoreUnavailable: Redis failed.
        """
        client = self._live()
        with _redis_errors("TIME"):
            seconds, micros = await client.time()
        return float(seconds) + float(micros) / 1e6
