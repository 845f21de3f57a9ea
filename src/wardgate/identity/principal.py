"""Who is calling: the identity every request carries once authenticated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ANONYMOUS", "AuthMethod", "BindingKey", "Principal"]

AuthMethod = Literal["anonymous", "jwt", "dpop", "mtls", "spiffe", "introspection"]

#: (issuer, tenant, client, subject): the whole identity a session or task is bound to.
BindingKey = tuple[str | None, str | None, str | None, str]


@dataclass(frozen=True, slots=True)
class Principal:
    """A proven identity.

    ``cnf`` holds the confirmation that binds the credential to a key
    (``{"jkt": …}`` for DPoP, ``{"x5t#S256": …}`` for certificate-bound tokens).
    """

    subject: str
    method: AuthMethod
    tenant: str | None = None
    client_id: str | None = None
    issuer: str | None = None
    scopes: frozenset[str] = frozenset()
    cnf: Mapping[str, str] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    @property
    def binding_key(self) -> BindingKey:
        """What a session is bound to: only the same issuer, tenant, client and subject
        may reuse it."""
        return (self.issuer, self.tenant, self.client_id, self.subject)


ANONYMOUS = Principal(subject="anonymous", method="anonymous")
