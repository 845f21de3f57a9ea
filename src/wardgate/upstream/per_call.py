"""Which messages of a stdio session go to per-call sandboxes, and where a client's
follow-ups to such a call go.

A covered ``tools/call`` (a tool listed in ``per_call.tools``) runs in a sandbox of its
own from the upstream's :class:`~wardgate.upstream.warm_pool.WarmPool`; every other
message (``tools/list``, resources, prompts, notifications) goes to the caller's
ordinary process (per session, or per isolation group), as without per-call sandboxes.
A client's ``notifications/cancelled`` for a per-call request, and its answer to a
server request a per-call sandbox made, go to that call's sandbox: looked up among the
caller's own calls only (``owner`` names one client session, or one principal of a
shared group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wardgate.wire.jsonrpc import JsonObject

if TYPE_CHECKING:
    from wardgate.config.sandboxing import PerCallSettings
    from wardgate.upstream.warm_pool import Lease, WarmPool

__all__ = ["covered", "follow_up"]


def covered(settings: PerCallSettings, message: JsonObject) -> bool:
    """Does ``message`` get a sandbox of its own?"""
    if message.get("method") != "tools/call":
        return False
    params = message.get("params")
    return isinstance(params, dict) and settings.covers(params.get("name"))


def follow_up(pool: WarmPool, owner: str, message: JsonObject) -> Lease | None:
    """The per-call sandbox of ``owner``'s that a client notification or answer is for;
    None: it is for the ordinary process."""
    mine = [lease for lease in pool.leases if lease.owner == owner and not lease.ended]
    if not mine:
        return None
    method = message.get("method")
    if method == "notifications/cancelled":
        params = message.get("params")
        target = params.get("requestId") if isinstance(params, dict) else None
        leases = [lease for lease in mine if lease.call_id == target]
        # Two of the caller's own in flight by that id cannot be told apart: neither.
        return leases[0] if len(leases) == 1 else None
    if method is None:
        return next((lease for lease in mine if lease.session.gave(message.get("id"))), None)
    return None
