"""Gateway sessions (handshake era): what one client session holds, and where they live."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wardgate.errors import WardgateError
from wardgate.identity.principal import BindingKey
from wardgate.upstream.seam import UpstreamSession

__all__ = ["GatewaySession", "SessionStore", "TooManySessions"]

log = logging.getLogger("wardgate.routing.sessions")


class TooManySessions(WardgateError):
    code = "wardgate.too_many_sessions"
    http_status = 503
    public_message = "Too many sessions"


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

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.upstreams.values()), return_exceptions=True)


class SessionStore:
    """In-process session table with an idle timeout and a size cap."""

    def __init__(
        self,
        *,
        idle_timeout: float = 1800.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions: dict[str, GatewaySession] = {}
        self._idle = idle_timeout
        self._max = max_sessions
        self._clock = clock

    @staticmethod
    def new_id() -> str:
        # 256 bits from the OS CSPRNG, URL-safe: visible ASCII as the spec requires.
        return secrets.token_urlsafe(32)

    def __len__(self) -> int:
        return len(self._sessions)

    async def add(self, session: GatewaySession) -> None:
        """Raises: TooManySessions: the table is full even after expiring idle ones."""
        if len(self._sessions) >= self._max:
            await self.expire()
            if len(self._sessions) >= self._max:
                raise TooManySessions(f"session table full ({self._max})")
        session.last_seen = self._clock()
        self._sessions[session.id] = session

    def get(self, session_id: str) -> GatewaySession | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle:
            self._sessions.pop(session_id, None)
            asyncio.get_running_loop().create_task(session.close())
            return None
        session.last_seen = now
        return session

    def pop(self, session_id: str) -> GatewaySession | None:
        return self._sessions.pop(session_id, None)

    async def expire(self) -> int:
        now = self._clock()
        stale = [s for s in self._sessions.values() if now - s.last_seen > self._idle]
        for session in stale:
            self._sessions.pop(session.id, None)
        await asyncio.gather(*(s.close() for s in stale), return_exceptions=True)
        return len(stale)

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
