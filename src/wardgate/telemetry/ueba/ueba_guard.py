"""The guard that feeds the detectors and enforces their blocks."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from wardgate.errors import Denied
from wardgate.identity.principal import Principal
from wardgate.state.store import StateStoreUnavailable
from wardgate.telemetry.ueba.detect import Observation, Ueba

if TYPE_CHECKING:
    from wardgate.core.call import Call
    from wardgate.wire.jsonrpc import Message

__all__ = ["BehaviourBlocked", "UebaGuard", "token_id"]

log = logging.getLogger("wardgate.ueba")


class BehaviourBlocked(Denied):
    """The subject is blocked for a while after a behaviour alert."""

    code: ClassVar[str] = "wardgate.behaviour_blocked"


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

    def __init__(self, ueba: Ueba, clock: Callable[[], float] = time.time) -> None:
        self.ueba = ueba
        self._clock = clock

    async def on_request(self, call: Call, message: Message) -> Message:
        ctx = call.ctx
        principal = ctx.principal
        if principal.method == "anonymous":
            return message  # every anonymous caller shares one subject: nothing to learn
        try:
            if await self.ueba.blocked(principal.subject, principal.tenant):
                raise BehaviourBlocked(f"subject {principal.subject} blocked by a behaviour alert")
            alerts = await self.ueba.observe(
                Observation(
                    ts=ctx.received_at or self._clock(),
                    subject=principal.subject,
                    tenant=principal.tenant,
                    client_addr=ctx.client_addr,
                    token_id=token_id(principal),
                    tool=ctx.target if call.method == "tools/call" else None,
                    decision_id=ctx.decision_id,
                    route=ctx.route,
                )
            )
        except StateStoreUnavailable as exc:
            log.warning("behaviour analytics skipped: %s", exc,
                        extra={"decision_id": ctx.decision_id})  # fmt: skip
            return message
        block = 0.0
        for alert in alerts:
            call.pipeline.events.emit(alert)
            block = max(block, alert.blocked_seconds)
        if block > 0:
            await self.ueba.block(principal.subject, principal.tenant, block)
            raise BehaviourBlocked(f"subject {principal.subject} blocked for {block} s")
        return message
