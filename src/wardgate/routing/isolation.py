"""Who may share a stateful upstream session (a stdio server process), and who is calling.

A stdio server keeps state in its process: two callers on one process can see each
other's effects. A route says which callers may share one: ``principal`` (nobody
shares), ``tenant`` (callers of one tenant share; the default; callers with no tenant
fall back to per principal), or ``shared`` (everyone: the operator's explicit choice).

The key handed to :meth:`~wardgate.upstream.seam.Upstream.shared_session` names two
things: the *group* of callers that may share one process, and the *caller* itself,
so that a shared process keeps each caller's request ids, cancellations and progress
apart. Parts are JSON-encoded, so no claim value can forge a separator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from wardgate.identity.principal import Principal

__all__ = ["Isolation", "IsolationKey", "isolation_key"]

Isolation = Literal["principal", "tenant", "shared"]

_SEP = "\n"  # never inside a JSON encoding: newlines in strings are escaped
_PRINCIPAL = "principal"


def _encode(*parts: str | None) -> str:
    return orjson.dumps(parts).decode()


@dataclass(frozen=True, slots=True)
class IsolationKey:
    """A parsed isolation key.

    ``group``: the callers that may share one process (``""``: everyone).
    ``caller``: the principal within the group whose ids, cancellations and progress
    are its own. ``exclusive``: the group holds one principal only, so what the server
    says outside any request may go to that principal.
    """

    group: str
    caller: str

    @property
    def exclusive(self) -> bool:
        return self.group.startswith(f'["{_PRINCIPAL}"')

    def __str__(self) -> str:
        return f"{self.group}{_SEP}{self.caller}"

    @classmethod
    def parse(cls, key: str) -> IsolationKey:
        """Split a key made by :func:`isolation_key`; any other string is one group
        whose callers are all the same (anonymous) caller."""
        group, sep, caller = key.partition(_SEP)
        return cls(group, caller if sep else group)


def isolation_key(principal: Principal, mode: Isolation) -> str:
    """The key naming the group of callers that may share a stateful upstream session
    and the caller within it."""
    issuer, tenant, client, subject = principal.binding_key
    caller = _encode(_PRINCIPAL, issuer, tenant, client, subject)
    if mode == "shared":
        group = ""
    elif mode == "tenant" and principal.tenant is not None:
        group = _encode("tenant", issuer, principal.tenant)
    else:
        group = caller
    return str(IsolationKey(group, caller))
