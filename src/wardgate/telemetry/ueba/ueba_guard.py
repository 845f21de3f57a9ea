"""The guard that feeds the detectors and enforces their blocks and revocations."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from wardgate.errors import AuthenticationFailed, Denied, SessionNotFound
from wardgate.identity.principal import Principal
from wardgate.state.store import StateStoreUnavailable
from wardgate.telemetry.ueba.detect import Observation, Ueba

if TYPE_CHECKING:
    from wardgate.core.call import Call
    from wardgate.wire.jsonrpc import Message

__all__ = ["BehaviourBlocked", "CredentialRevoked", "SessionEnder", "UebaGuard", "token_id"]

log = logging.getLogger("wardgate.ueba")


class BehaviourBlocked(Denied):
    """The subject is blocked for a while after a behaviour alert."""

    code: ClassVar[str] = "wardgate.behaviour_blocked"


class CredentialRevoked(AuthenticationFailed):
    """The token was revoked for a while after a behaviour alert (401: authenticate again)."""

    code: ClassVar[str] = "wardgate.credential_revoked"


#: Ends a handshake session held by this replica: ``(route, session_id)``.
SessionEnder = Callable[[str, str], Awaitable[None]]


def token_id(principal: Principal) -> str | None:
    """A stable hash naming the credential behind a principal: the issuer and ``jti``
    when the token has one, else issuer, subject, client and ``iat`` (one token)."""
    if principal.method == "anonymous":
        return None
    claims = principal.claims
    jti, iat = claims.get("jti"), claims.get("iat")
    if jti is None and iat is None:
        return None
    basis = (
        f"{principal.issuer}|{jti}"
        if jti is not None
        else (f"{principal.issuer}|{principal.subject}|{principal.client_id}|{iat}")
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


class UebaGuard:
    """Observes every authenticated call; refuses a subject a detector blocked.

    Detection is best effort: with the store down the call goes on (logged), and blocks
    are not enforced meanwhile (``fail_open``); the ``[limits]`` failure mode governs the
    controls that must hold.
    """

    name = "ueba"
    methods: frozenset[str] | None = None
    fail_open = True

    def __init__(
        self,
        ueba: Ueba,
        clock: Callable[[], float] = time.time,
        *,
        end_session: SessionEnder | None = None,
    ) -> None:
        self.ueba = ueba
        self._clock = clock
        #: Set by the gateway: ends a session in this replica's table (and revokes a
        #: sealed id fleet-wide). Without it only the shared mark refuses the session.
        self.end_session = end_session

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        BehaviourBlocked: the subject is blocked after an alert.
        SessionNotFound: the call's session was ended after an alert (404).
        CredentialRevoked: the call's token was revoked after an alert (401).
        """
        ctx = call.ctx
        principal = ctx.principal
        if principal.method == "anonymous":
            return message  # every anonymous caller shares one subject: nothing to learn
        token = token_id(principal)
        revoking = self.ueba.config.revoke_seconds > 0
        try:
            if await self.ueba.blocked(principal.subject, principal.tenant):
                raise BehaviourBlocked(f"subject {principal.subject} blocked by a behaviour alert")
            if revoking:
                await self._refuse_revoked(ctx.route, ctx.session_id, token)
            alerts = await self.ueba.observe(
                Observation(
                    ts=ctx.received_at or self._clock(),
                    subject=principal.subject,
                    tenant=principal.tenant,
                    client_addr=ctx.client_addr,
                    token_id=token,
                    tool=ctx.target if call.method == "tools/call" else None,
                    decision_id=ctx.decision_id,
                    route=ctx.route,
                )
            )
        except StateStoreUnavailable as exc:
            log.warning("behaviour analytics skipped: %s", exc,
                        extra={"decision_id": ctx.decision_id})  # fmt: skip
            return message
        block = revoke = 0.0
        for alert in alerts:
            call.pipeline.events.emit(alert)
            block = max(block, alert.blocked_seconds)
            revoke = max(revoke, alert.revoked_seconds)
        if revoke > 0:
            await self._revoke(ctx.route, ctx.session_id, token, revoke)
        if block > 0:
            await self.ueba.block(principal.subject, principal.tenant, block)
            raise BehaviourBlocked(f"subject {principal.subject} blocked for {block} s")
        if revoke > 0:
            if ctx.session_id is not None:
                raise SessionNotFound(f"session ended by a behaviour alert for {revoke} s")
            raise CredentialRevoked(f"token revoked by a behaviour alert for {revoke} s")
        return message

    async def _refuse_revoked(self, route: str, session_id: str | None, token: str | None) -> None:
        if session_id is not None and await self.ueba.session_revoked(session_id):
            # Another replica ended it: let go of this replica's copy too.
            await self._end(route, session_id)
            raise SessionNotFound("session ended by a behaviour alert")
        if token is not None and await self.ueba.token_revoked(token):
            raise CredentialRevoked("token revoked by a behaviour alert")

    async def _revoke(
        self, route: str, session_id: str | None, token: str | None, seconds: float
    ) -> None:
        # The shared marks first: from then on no replica serves the session or token.
        await self.ueba.revoke(session_id, token, seconds)
        if session_id is not None:
            await self._end(route, session_id)

    async def _end(self, route: str, session_id: str) -> None:
        if self.end_session is None:
            return
        try:
            await self.end_session(route, session_id)
        except StateStoreUnavailable:
            raise
        except Exception:  # the shared mark already refuses it; closing is best effort
            log.exception("ending a revoked session failed")
