"""Gateway sessions (handshake era): what one client session holds, and where they live.

The store bounds what sessions cost before they cost it. A handshake first takes a place
in the table (:meth:`SessionStore.reserve`), and only then opens anything upstream; the
place is given back if the handshake fails. Places are capped in total and per principal
(the principal's whole binding key, tenant included), and one refusal,
:class:`TooManySessions`, answers every cause, so a caller learns nothing about other
principals' sessions. Legacy SSE streams take places in a second table with the same
caps (:meth:`SessionStore.open_channel`). A background sweeper, started by
:meth:`SessionStore.start`, closes whatever has been idle too long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wardgate.errors import TooManySessions
from wardgate.identity.principal import BindingKey
from wardgate.telemetry.events import GatewayEvent, SessionClosed, SessionOpened, session_ref
from wardgate.upstream.seam import Upstream, UpstreamSession

if TYPE_CHECKING:
    from wardgate.routing.sealed import SessionSealer

__all__ = ["ChannelLease", "GatewaySession", "SessionSlot", "SessionStore", "TooManySessions"]

log = logging.getLogger("wardgate.routing.sessions")

Sleep = Callable[[float], Awaitable[None]]
Emit = Callable[[GatewayEvent], None]


@dataclass(slots=True)
class GatewaySession:
    """One client session and the upstream sessions behind it, by upstream index."""

    id: str
    route: str
    upstreams: dict[int, UpstreamSession]
    versions: dict[int, str]
    protocol_version: str
    owner: BindingKey
    last_seen: float = field(default_factory=time.monotonic)
    #: Its id is a sealed handle (see :mod:`wardgate.routing.sealed`): other replicas
    #: may be serving it too, so only the client's DELETE ends it upstream.
    sealed: bool = False
    #: When this replica last found its sealed id not revoked (its own clock).
    revocation_checked: float = float("-inf")

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.upstreams.values()), return_exceptions=True)

    async def discard(self) -> None:
        """Let go of this replica's copy: a sealed session lives on upstream (it holds
        nothing here); any other is closed."""
        if not self.sealed:
            await self.close()


class _Quota:
    """Places taken, in total and per owner. Owners with no place are forgotten, so the
    table is bounded by the places themselves."""

    __slots__ = ("_by_owner", "per_owner", "total", "used")

    def __init__(self, total: int, per_owner: int) -> None:
        self.total = total
        self.per_owner = per_owner
        self.used = 0
        self._by_owner: dict[BindingKey, int] = {}

    def refusal(self, owner: BindingKey) -> str | None:
        if self.used >= self.total:
            return f"global cap of {self.total} reached"
        if self._by_owner.get(owner, 0) >= self.per_owner:
            return f"per-principal cap of {self.per_owner} reached"
        return None

    def take(self, owner: BindingKey) -> None:
        self.used += 1
        self._by_owner[owner] = self._by_owner.get(owner, 0) + 1

    def give(self, owner: BindingKey) -> None:
        left = self._by_owner.get(owner, 0) - 1
        if left < 0:  # pragma: no cover - a bookkeeping bug must not go negative silently
            log.error("session quota released twice")
            return
        self.used -= 1
        if left:
            self._by_owner[owner] = left
        else:
            del self._by_owner[owner]

    def held(self, owner: BindingKey) -> int:
        return self._by_owner.get(owner, 0)


class SessionSlot:
    """A place in the session table, held while a handshake runs."""

    __slots__ = ("_store", "owner", "session")

    def __init__(self, store: SessionStore, owner: BindingKey) -> None:
        self._store = store
        self.owner = owner
        self.session: GatewaySession | None = None

    def commit(self, session: GatewaySession, decision_id: str | None = None) -> None:
        """Put the session, now open upstream, in the place this slot holds
        (``decision_id``: the handshake's, for the ``session.opened`` event).

        Raises:
            ValueError: the session belongs to another principal, or the slot was
                already used.
        """
        if session.owner != self.owner:
            raise ValueError("a slot holds a place for its own principal only")
        if self.session is not None:
            raise ValueError("this slot already holds a session")
        self.session = session
        self._store._insert(session, decision_id)


class ChannelLease:
    """A legacy SSE stream's place in the channel table.

    ``touch()`` on every message the client posts; when it has been idle longer than the
    store's idle timeout the sweeper calls ``on_idle`` (which ends the stream) and frees
    the place. ``release()`` frees it when the stream ends; calling it twice is harmless.
    """

    __slots__ = ("_store", "last_seen", "on_idle", "owner", "released")

    def __init__(self, store: SessionStore, owner: BindingKey, on_idle: Callable[[], None]) -> None:
        self._store = store
        self.owner = owner
        self.on_idle = on_idle
        self.last_seen = store.now()
        self.released = False

    def touch(self) -> None:
        self.last_seen = self._store.now()

    def release(self) -> None:
        self._store._drop_channel(self)


class SessionStore:
    """In-process session table with an idle timeout, a global and a per-principal cap.

    Lifecycle: construction does no I/O; :meth:`start` starts the idle sweeper;
    :meth:`aclose` stops it and closes every session and stream.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = 1800.0,
        max_sessions: int = 10_000,
        max_per_principal: int = 100,
        sweep_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        sealer: SessionSealer | None = None,
        emit: Emit | None = None,
    ) -> None:
        self._sessions: dict[str, GatewaySession] = {}
        #: ``session.opened`` / ``session.closed`` go here (the gateway's event bus).
        self._emit = emit
        #: Sealed sessions rebuilt here from their handle: a cache, outside the quota
        #: (their place was counted by the replica that opened them).
        self._rebuilt: set[str] = set()
        self.sealer = sealer
        self._channels: set[ChannelLease] = set()
        self._quota = _Quota(max_sessions, max_per_principal)
        self._channel_quota = _Quota(max_sessions, max_per_principal)
        self._idle = idle_timeout
        self._sweep_every = sweep_interval
        self._clock = clock
        self._sleep = sleep
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def new_id() -> str:
        # 256 bits from the OS CSPRNG, URL-safe: visible ASCII as the spec requires.
        return secrets.token_urlsafe(32)

    def now(self) -> float:
        return self._clock()

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def channels(self) -> int:
        """Legacy SSE streams open."""
        return len(self._channels)

    def by_route(self) -> dict[str, int]:
        """Sessions in the table, by route (sealed copies rebuilt here included)."""
        counts: dict[str, int] = {}
        for session in list(self._sessions.values()):
            counts[session.route] = counts.get(session.route, 0) + 1
        return counts

    def held_by(self, owner: BindingKey) -> int:
        """Places (sessions and handshakes in flight) the principal holds."""
        return self._quota.held(owner)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the idle sweeper (once)."""
        if self.sealer is not None and self._sweeper is None:
            await self.sealer.store.start()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="wardgate.sessions.sweep")

    async def _sweep_loop(self) -> None:
        while True:
            await self._sleep(self._sweep_every)
            try:
                swept = await self.expire()
            except Exception:  # the sweeper must outlive one bad close
                log.exception("session sweep failed")
                continue
            if swept:
                log.info("swept %d idle sessions and streams", swept)

    async def aclose(self) -> None:
        """Stop the sweeper, end every legacy SSE stream and close every session."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for lease in list(self._channels):
            self._end_channel(lease)
        sessions = list(self._sessions.values())
        for session in sessions:
            self._remove(session.id, "shutdown")
        await asyncio.gather(*(s.discard() for s in sessions), return_exceptions=True)
        if self.sealer is not None:
            await self.sealer.store.aclose()

    # -- handshake sessions ----------------------------------------------------

    async def _admit(self, quota: _Quota, owner: BindingKey) -> None:
        reason = quota.refusal(owner)
        if reason is not None:
            await self.expire()  # idle places are dead anyway: reclaim them first
            reason = quota.refusal(owner)
        if reason is not None:
            raise TooManySessions(reason, retry_after=int(min(self._sweep_every, self._idle)))
        # No await between the last check and the take: asyncio cannot interleave here.
        quota.take(owner)

    @contextlib.asynccontextmanager
    async def reserve(self, owner: BindingKey) -> AsyncIterator[SessionSlot]:
        """Hold a place for a handshake; open the upstream session inside the block and
        ``slot.commit(session)`` once it is open.

        A place not committed when the block ends is given back; a session committed
        in a block that then fails is removed and closed (its id never reached the client).

        Raises:
            TooManySessions: the table or the principal's share of it is full.
        """
        await self._admit(self._quota, owner)
        slot = SessionSlot(self, owner)
        try:
            yield slot
        except BaseException:
            if slot.session is None:
                self._quota.give(owner)
            elif self._remove(slot.session.id, "failed") is not None:
                with contextlib.suppress(Exception):
                    await slot.session.close()  # its id never left: close even if sealed
            raise
        if slot.session is None:
            self._quota.give(owner)

    def _insert(self, session: GatewaySession, decision_id: str | None = None) -> None:
        if self.sealer is not None:
            # Upstream session ids are known once initialize was answered: seal now.
            session.id = self.sealer.id_for(session)
            session.sealed = session.id.startswith("s")
        session.last_seen = self._clock()
        self._sessions[session.id] = session
        if self._emit is not None:
            _issuer, tenant, _client, subject = session.owner
            self._emit(
                SessionOpened(
                    decision_id,
                    session.route,
                    session_ref(session.id),
                    subject,
                    tenant,
                    session.protocol_version,
                )
            )

    def _remove(self, session_id: str, reason: str) -> GatewaySession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            if session_id in self._rebuilt:
                # A copy rebuilt from a sealed handle: the replica that opened it said so.
                self._rebuilt.discard(session_id)
                return session
            self._quota.give(session.owner)
            if self._emit is not None:
                self._emit(SessionClosed(None, session.route, session_ref(session_id), reason))
        return session

    async def add(self, session: GatewaySession) -> None:
        """Put a session opened without a reservation in the table.

        Prefer :meth:`reserve`, which refuses before anything is opened upstream.

        Raises:
            TooManySessions: the table or the owner's share of it is full (the caller
                closes the session).
        """
        await self._admit(self._quota, session.owner)
        self._insert(session)

    def get(self, session_id: str) -> GatewaySession | None:
        """The live session with this id (its idle timer restarts), else None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle:
            self._remove(session_id, "idle")
            asyncio.get_running_loop().create_task(session.discard())
            return None
        session.last_seen = now
        return session

    async def find(
        self, session_id: str, route: str, owner: BindingKey, upstreams: Sequence[Upstream]
    ) -> GatewaySession | None:
        """The session ``owner`` holds on ``route`` under this id: from this replica's
        table, else rebuilt from a sealed handle; None for anything else (unknown,
        another route's or principal's, tampered, expired, revoked, pinned elsewhere).

        Raises:
            StateStoreUnavailable: a sealed handle's revocation cannot be checked.
        """
        session = self.get(session_id)
        if session is not None:
            if session.route != route or session.owner != owner:
                return None
            if session.sealed and self.sealer is not None:
                now = self._clock()
                if now - session.revocation_checked >= self.sealer.recheck_seconds:
                    if await self.sealer.revoked(session_id):
                        # A DELETE on another replica: let go of this copy too.
                        self._remove(session_id, "revoked")
                        return None
                    session.revocation_checked = now
            return session
        if self.sealer is None:
            return None
        session = await self.sealer.restore(session_id, route, owner, upstreams)
        if session is None:
            return None
        # Another request may have rebuilt it meanwhile; the table keeps one copy, and
        # rebuilt copies are a bounded cache (past the cap they are served, not kept).
        held = self._sessions.get(session_id)
        if held is not None:
            return held
        session.revocation_checked = self._clock()  # restore just checked it
        if len(self._sessions) < self._quota.total:
            session.last_seen = self._clock()
            self._sessions[session_id] = session
            self._rebuilt.add(session_id)
        return session

    async def revoke(self, session: GatewaySession) -> None:
        """Refuse a sealed session's id on every replica (a DELETE); no-op otherwise.

        Raises:
            StateStoreUnavailable: the revocation could not be written.
        """
        if self.sealer is not None and session.sealed:
            await self.sealer.revoke(session)

    def touch(self, session: GatewaySession) -> None:
        """Restart a session's idle timer (a legacy SSE message used it)."""
        if self._sessions.get(session.id) is session:
            session.last_seen = self._clock()

    def pop(self, session_id: str, reason: str = "deleted") -> GatewaySession | None:
        """Take a session out of the table (the caller closes it); ``reason`` goes to
        the ``session.closed`` event."""
        return self._remove(session_id, reason)

    # -- legacy SSE streams ----------------------------------------------------

    async def open_channel(self, owner: BindingKey, on_idle: Callable[[], None]) -> ChannelLease:
        """Take a place for a legacy SSE stream before it is opened.

        Raises:
            TooManySessions: the stream table or the principal's share of it is full.
        """
        await self._admit(self._channel_quota, owner)
        lease = ChannelLease(self, owner, on_idle)
        self._channels.add(lease)
        return lease

    def _drop_channel(self, lease: ChannelLease) -> None:
        if not lease.released:
            lease.released = True
            self._channels.discard(lease)
            self._channel_quota.give(lease.owner)

    def _end_channel(self, lease: ChannelLease) -> None:
        self._drop_channel(lease)
        try:
            lease.on_idle()
        except Exception:
            log.exception("ending an idle legacy SSE stream failed")

    # -- sweeping --------------------------------------------------------------

    async def expire(self) -> int:
        """Close every session and stream idle longer than the timeout; how many."""
        now = self._clock()
        stale = [s for s in self._sessions.values() if now - s.last_seen > self._idle]
        for session in stale:
            self._remove(session.id, "idle")
        idle = [c for c in self._channels if now - c.last_seen > self._idle]
        for lease in idle:
            self._end_channel(lease)
        await asyncio.gather(*(s.discard() for s in stale), return_exceptions=True)
        return len(stale) + len(idle)
