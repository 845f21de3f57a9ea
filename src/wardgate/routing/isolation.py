"""Who may share a stateful upstream session (a stdio server process).

A stdio server keeps state in its process: two callers on one process can see each
other's effects. A route says which callers may share one: ``principal`` (nobody
shares), ``tenant`` (callers of one tenant share; the default; callers with no tenant
fall back to per principal), or ``shared`` (everyone: the operator's explicit choice).
"""

from __future__ import annotations

from typing import Literal

from wardgate.identity.principal import Principal

__all__ = ["Isolation", "isolation_key"]

Isolation = Literal["principal", "tenant", "shared"]


def isolation_key(principal: Principal, mode: Isolation) -> str:
    """The name of the group of callers that may share a stateful upstream session."""
    if mode == "shared":
        return ""
    if mode == "tenant" and principal.tenant is not None:
        return f"tenant\x1f{principal.issuer or ''}\x1f{principal.tenant}"
    issuer, tenant, client, subject = principal.binding_key
    return f"principal\x1f{issuer or ''}\x1f{tenant or ''}\x1f{client or ''}\x1f{subject}"
