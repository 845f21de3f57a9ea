"""Pins: the approved fingerprint of every descriptor an upstream listed, in a shared store.

A pin is keyed by the upstream's identity (its command line or URL, hashed) and the
descriptor's kind and name. :class:`PinBook` decides what a newly listed descriptor is:
``pinned`` (first sight, recorded), ``same``, ``changed`` or ``renamed`` (held until an
operator approves), or ``held``/``rejected`` (already waiting or refused).

Two stores, one small Protocol: :class:`MemoryPinStore` (one replica) and
:class:`RedisPinStore` (a Redis hash per upstream, shared by the fleet). Redis failures
are translated to :class:`~wardgate.state.StateStoreUnavailable` at one boundary, so
the guard fails closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from wardgate.content.integrity import Descriptor, Kind
from wardgate.state.store import StateStoreUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["MemoryPinStore", "Pin", "PinBook", "PinStore", "RedisPinStore", "Verdict"]

Status = Literal["approved", "pending", "rejected"]
Verdict = Literal["pinned", "same", "changed", "renamed", "held", "rejected"]


@dataclass(frozen=True, slots=True)
class Pin:
    """The approved descriptor, and a changed one waiting for review (if any)."""

    kind: Kind
    name: str
    fingerprint: str
    body_hash: str
    body: dict[str, Any]
    status: Status = "approved"
    pending: dict[str, Any] | None = None
    pending_fingerprint: str | None = None

    @property
    def field(self) -> str:
        return f"{self.kind}|{self.name}"

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> Pin:
        return cls(**orjson.loads(raw))


class PinStore(Protocol):
    """Where pins live. Every method may raise ``StateStoreUnavailable``."""

    async def get(self, upstream: str, field: str) -> Pin | None: ...

    async def put(self, upstream: str, pin: Pin) -> None: ...

    async def all(self, upstream: str) -> list[Pin]: ...


def upstream_key(identity: str) -> str:
    """A short stable key for an upstream identity (a command line or a URL)."""
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


class MemoryPinStore:
    """Pins in this process (a single replica; lost on restart)."""

    def __init__(self) -> None:
        self._pins: dict[str, dict[str, Pin]] = {}

    async def get(self, upstream: str, field: str) -> Pin | None:
        return self._pins.get(upstream_key(upstream), {}).get(field)

    async def put(self, upstream: str, pin: Pin) -> None:
        self._pins.setdefault(upstream_key(upstream), {})[pin.field] = pin

    async def all(self, upstream: str) -> list[Pin]:
        return list(self._pins.get(upstream_key(upstream), {}).values())


@contextmanager
def _redis_errors(operation: str) -> Iterator[None]:
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise StateStoreUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc


class RedisPinStore:
    """Pins in one Redis hash per upstream: ``{prefix}pins:{upstream key}``.

    Takes a ``redis.asyncio`` client (share the state store's pool); the caller owns it.
    """

    def __init__(self, client: Redis, *, key_prefix: str = "wardgate:") -> None:
        self._client = client
        self._prefix = key_prefix

    def _key(self, upstream: str) -> str:
        return f"{self._prefix}pins:{upstream_key(upstream)}"

    async def get(self, upstream: str, field: str) -> Pin | None:
        with _redis_errors("HGET"):
            raw = await self._client.hget(self._key(upstream), field)
        return Pin.loads(raw) if raw is not None else None

    async def put(self, upstream: str, pin: Pin) -> None:
        with _redis_errors("HSET"):
            await self._client.hset(self._key(upstream), pin.field, pin.dumps())

    async def all(self, upstream: str) -> list[Pin]:
        with _redis_errors("HGETALL"):
            raw = await self._client.hgetall(self._key(upstream))
        return [Pin.loads(v) for v in raw.values()]


class PinBook:
    """Decides on listed descriptors against the store; approves and rejects changes.

    ``on_new``: what a descriptor never seen before is: ``allow`` (pinned at once),
    ``hold`` (pinned as pending, withheld until approved), ``deny`` (rejected).
    """

    def __init__(
        self, store: PinStore, *, on_new: Literal["allow", "hold", "deny"] = "allow"
    ) -> None:
        self.store = store
        self.on_new = on_new

    async def check(self, upstream: str, d: Descriptor) -> Verdict:
        """The verdict on ``d`` as listed now by ``upstream`` (recording what it must).

        Raises:
            StateStoreUnavailable: the store failed (the caller withholds, fail closed).
        """
        field = f"{d.kind}|{d.name}"
        pin = await self.store.get(upstream, field)
        if pin is None:
            renamed = await self._renamed(upstream, d)
            if renamed or self.on_new != "allow":
                status: Status = "rejected" if self.on_new == "deny" and not renamed else "pending"
                await self.store.put(upstream, _pending(d, status))
                return "renamed" if renamed else ("rejected" if status == "rejected" else "held")
            await self.store.put(upstream, Pin(d.kind, d.name, d.fingerprint, d.body_hash, d.body))
            return "pinned"
        if pin.status == "rejected":
            return "rejected"
        if pin.fingerprint == d.fingerprint and pin.status == "approved":
            return "same"
        if pin.pending_fingerprint != d.fingerprint:
            await self.store.put(
                upstream, replace(pin, pending=d.body, pending_fingerprint=d.fingerprint)
            )
        return "changed" if pin.status == "approved" else "held"

    async def _renamed(self, upstream: str, d: Descriptor) -> bool:
        return any(
            p.kind == d.kind and p.body_hash == d.body_hash and p.name != d.name
            for p in await self.store.all(upstream)
        )

    async def approve(self, upstream: str, kind: Kind, name: str) -> Pin | None:
        """Accept the pending descriptor (or a held new one); ``None`` if there is no pin."""
        pin = await self.store.get(upstream, f"{kind}|{name}")
        if pin is None:
            return None
        body = pin.pending if pin.pending is not None else pin.body
        d = Descriptor.of(kind, name, body)
        approved = Pin(kind, name, d.fingerprint, d.body_hash, d.body)
        await self.store.put(upstream, approved)
        return approved

    async def reject(self, upstream: str, kind: Kind, name: str) -> None:
        """Refuse the pending change for good: calls stay refused."""
        pin = await self.store.get(upstream, f"{kind}|{name}")
        if pin is not None:
            await self.store.put(upstream, replace(pin, status="rejected"))


def _pending(d: Descriptor, status: Status) -> Pin:
    # Nothing approved yet: the approved fingerprint is empty, so it matches no listing.
    return Pin(d.kind, d.name, "", d.body_hash, {}, status, d.body, d.fingerprint)
