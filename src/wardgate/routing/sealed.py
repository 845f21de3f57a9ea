"""Sealed sessions: a handshake-era session id that any replica of a fleet can serve.

With ``[server.sealed_sessions]`` set, the ``Mcp-Session-Id`` the gateway hands out for
a session whose upstreams are all HTTP is the session itself, sealed: its route, the
principal's binding key, each member's upstream session id and negotiated version, the
protocol version, an expiry and a random handle id, as compact JSON encrypted and
authenticated with AES-256-GCM (a random 96-bit nonce, the route name as associated
data) under the fleet's first key, then base64url. A replica that does not hold the
session opens the handle, checks route, owner, expiry and the fleet-wide revocation
list, and rebuilds it (:meth:`SessionSealer.restore`). A DELETE revokes the handle id in
the shared state store for the handle's remaining lifetime (:meth:`SessionSealer.revoke`).

Keys come from environment variables named in the config (32 random bytes, base64);
every listed key opens handles, the first seals: rotate by putting the new key first,
then dropping the old one once no live handle needs it. A handle names its key by a
4-byte fingerprint, so order changes do not break it.

A session with a stdio member cannot move: its id is ``r<replica>.<random>``, naming the
replica that holds it, and any other replica answers it as unknown (404) rather than
serve it wrongly; the load balancer routes on the replica name (see docs/fleet.md).

Every failure to open (malformed, tampered, foreign key, other route, other principal,
expired, revoked) reads the same to the caller: ``None``, which the edge answers 404
exactly as an unknown id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wardgate.errors import ConfigError
from wardgate.identity.principal import BindingKey

if TYPE_CHECKING:
    from wardgate.routing.sessions import GatewaySession
    from wardgate.state.store import StateStore
    from wardgate.upstream.seam import Upstream

__all__ = ["SealKeys", "SealedState", "SessionSealer", "load_keys"]

log = logging.getLogger("wardgate.routing.sealed")

#: First character of a sealed handle; ``r`` starts a replica-pinned one.
SEALED = "s"
PINNED = "r"
_KID = 4
_NONCE = 12
#: Handles past this size are not even decoded (a header is at most 32 KiB anyway).
_MAX_HANDLE = 8192
_REVOKED = "sealed-revoked:"


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_keys(names: Sequence[str], environ: dict[str, str] | None = None) -> list[bytes]:
    """The 32-byte keys held by the environment variables ``names``, in order.

    Raises:
        ConfigError: a variable is unset or does not hold 32 bytes of base64.
    """
    env = os.environ if environ is None else environ
    keys = []
    for name in names:
        value = env.get(name)
        if value is None:
            raise ConfigError(f"server.sealed_sessions.keys: ${name} is not set")
        try:
            key = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(
                f"server.sealed_sessions.keys: ${name} must hold 32 random bytes in base64"
            )
        keys.append(key)
    return keys


class SealKeys:
    """The fleet's keys: the first seals, every one opens."""

    __slots__ = ("_by_kid", "_first")

    def __init__(self, keys: Sequence[bytes]) -> None:
        """Raises:
        ValueError: no key, a key not 32 bytes, or two keys with one fingerprint.
        """
        if not keys:
            raise ValueError("at least one key is needed")
        self._by_kid: dict[bytes, AESGCM] = {}
        for key in keys:
            if len(key) != 32:
                raise ValueError("keys are 32 bytes (AES-256)")
            kid = hashlib.sha256(key).digest()[:_KID]
            if kid in self._by_kid:
                raise ValueError("a key is listed twice")
            self._by_kid[kid] = AESGCM(key)
        self._first = next(iter(self._by_kid.items()))

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        kid, aead = self._first
        nonce = secrets.token_bytes(_NONCE)
        return SEALED + _b64e(kid + nonce + aead.encrypt(nonce, plaintext, aad))

    def open(self, handle: str, aad: bytes) -> bytes | None:
        """The plaintext, or None when the handle is not one of ours, intact."""
        if not handle.startswith(SEALED) or len(handle) > _MAX_HANDLE:
            return None
        try:
            raw = _b64d(handle[1:])
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _KID + _NONCE + 16:
            return None
        aead = self._by_kid.get(raw[:_KID])
        if aead is None:
            return None
        try:
            return aead.decrypt(raw[_KID : _KID + _NONCE], raw[_KID + _NONCE :], aad)
        except InvalidTag:
            return None


@dataclass(frozen=True, slots=True)
class SealedState:
    """What a sealed handle carries."""

    route: str
    owner: BindingKey
    #: ``(member index, upstream session id or None, negotiated version)``
    members: tuple[tuple[int, str | None, str], ...]
    protocol_version: str
    #: Unix time after which the handle is refused.
    expires: float
    #: The handle's own id: what a DELETE revokes.
    handle_id: str

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "r": self.route,
                "o": list(self.owner),
                "m": [list(m) for m in self.members],
                "v": self.protocol_version,
                "e": self.expires,
                "j": self.handle_id,
            }
        )

    @classmethod
    def load(cls, raw: bytes) -> SealedState | None:
        """The state, or None if the (authenticated) bytes are not of this shape."""
        try:
            doc: Any = orjson.loads(raw)
            o = doc["o"]
            owner: BindingKey = (o[0], o[1], o[2], str(o[3]))
            members = tuple((int(i), None if s is None else str(s), str(v)) for i, s, v in doc["m"])
            return cls(str(doc["r"]), owner, members, str(doc["v"]), float(doc["e"]), str(doc["j"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            return None


class SessionSealer:
    """Seals handshake sessions into their ids and rebuilds them on any replica.

    Lifecycle: construction does no I/O; the revocation ``store`` is started and
    closed by its owner (:class:`~wardgate.routing.sessions.SessionStore`).
    """

    def __init__(
        self,
        keys: SealKeys,
        store: StateStore,
        *,
        lifetime: float,
        replica: str,
        recheck_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``recheck_seconds``: how long a replica serves a session it holds without
        asking the store again whether it was DELETEd elsewhere (0: every request)."""
        self.keys = keys
        self.store = store
        self.lifetime = lifetime
        self.replica = replica
        self.recheck_seconds = recheck_seconds
        self._clock = clock

    # -- ids -------------------------------------------------------------------

    def id_for(self, session: GatewaySession) -> str:
        """The client-facing id of a session just opened: sealed when every member is
        an HTTP upstream session, else pinned to this replica."""
        from wardgate.upstream.http import HttpSession

        ups = session.upstreams
        if not ups or not all(type(s) is HttpSession for s in ups.values()):
            return f"{PINNED}{self.replica}.{secrets.token_urlsafe(24)}"
        state = SealedState(
            route=session.route,
            owner=session.owner,
            members=tuple(
                (i, s.session_id, session.versions.get(i, ""))  # type: ignore[attr-defined]
                for i, s in sorted(ups.items())
            ),
            protocol_version=session.protocol_version,
            expires=self._clock() + self.lifetime,
            handle_id=secrets.token_urlsafe(12),
        )
        return self.keys.seal(state.dump(), session.route.encode())

    def replica_of(self, handle: str) -> str | None:
        """The replica a pinned handle names (for the ``wardgate-replica`` header)."""
        if not handle.startswith(PINNED) or "." not in handle:
            return None
        return handle[1:].partition(".")[0] or None

    def open(self, handle: str, route: str, owner: BindingKey) -> SealedState | None:
        """The state a handle seals, if it is intact, for ``route`` and ``owner``, and
        not expired; else None (revocation is checked by :meth:`restore`)."""
        raw = self.keys.open(handle, route.encode())
        state = SealedState.load(raw) if raw is not None else None
        if state is None or state.route != route or state.owner != owner:
            return None
        if state.expires <= self._clock():
            return None
        return state

    # -- fleet-wide ------------------------------------------------------------

    async def restore(
        self, handle: str, route: str, owner: BindingKey, upstreams: Sequence[Upstream]
    ) -> GatewaySession | None:
        """Rebuild the session a sealed handle carries, or None (answered as unknown).

        ``upstreams``: the route's members, by index.

        Raises:
            StateStoreUnavailable: the revocation list cannot be read (fail closed).
        """
        from wardgate.routing.sessions import GatewaySession
        from wardgate.upstream.http import HttpSession, HttpUpstream

        state = self.open(handle, route, owner)
        if state is None or await self.revoked(handle):
            return None
        sessions: dict[int, Any] = {}
        versions: dict[int, str] = {}
        for index, upstream_id, version in state.members:
            if not 0 <= index < len(upstreams):
                return None
            upstream = upstreams[index]
            if not isinstance(upstream, HttpUpstream):
                return None  # the route changed under the handle
            up = await upstream.open_session()
            assert isinstance(up, HttpSession)
            up.session_id = upstream_id
            sessions[index] = up
            versions[index] = version
        return GatewaySession(
            id=handle,
            route=route,
            upstreams=sessions,
            versions=versions,
            protocol_version=state.protocol_version,
            owner=owner,
            sealed=True,
        )

    async def revoked(self, handle: str) -> bool:
        """Whether a DELETE on any replica ended this handle's session.

        Raises:
            StateStoreUnavailable: the revocation list cannot be read.
        """
        return await self.store.doc_get(_revocation_key(handle)) is not None

    async def revoke(self, session: GatewaySession) -> None:
        """Refuse this session's handle on every replica for the rest of its life.

        Raises:
            StateStoreUnavailable: the revocation could not be written.
        """
        state = self.open(session.id, session.route, session.owner)
        if state is None:
            return  # pinned or already expired: nothing another replica would accept
        ttl = max(1.0, state.expires - self._clock())
        await self.store.doc_put(_revocation_key(session.id), {"at": self._clock()}, ttl)


def _revocation_key(handle: str) -> str:
    # A digest, not the handle: the store never holds a usable session id.
    return _REVOKED + hashlib.sha256(handle.encode("ascii", "replace")).hexdigest()[:32]
