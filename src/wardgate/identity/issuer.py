"""Frozen configuration values for identity: issuers, DPoP and mTLS."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from wardgate.errors import ConfigError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "IssuerConfig",
    "canonical_resource",
]

ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256", "RS384", "RS512",
        "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512",
        "EdDSA", "Ed25519",
    }
)  # fmt: skip
"""Every algorithm an issuer may be configured with: no ``none``, no HMAC."""

DEFAULT_ALGORITHMS = frozenset({"RS256", "PS256", "ES256", "EdDSA", "Ed25519"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_resource(value: str) -> str:
    """Canonical form of a resource URI for comparison (RFC 8707, MCP §Canonical URI).

    Lowercases scheme and host, drops a default port, a fragment and one trailing
    slash. Strings that are not absolute URLs are returned unchanged.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value
    if not parts.scheme or not parts.hostname:
        return value
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    return urlunsplit((scheme, netloc, path, parts.query, ""))


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    """One trusted token issuer and how its claims map onto a Principal.

    Attributes:
        issuer: the exact ``iss`` value (compared byte for byte).
        audience: this gateway's resource identifier; ``aud`` must contain it (RFC 8707).
        jwks_uri: where the keys are; when None, found by RFC 8414 / OIDC discovery.
        algorithms: allowed JWS algorithms, a subset of ``ASYMMETRIC_ALGORITHMS``.
        subject_claim: claim holding the subject.
        tenant: a fixed tenant for every token of this issuer (wins over the claim).
        tenant_claim: claim holding the tenant when ``tenant`` is None.
        allowed_tenants: when set, the tenant claim must be one of these.
        scope_claim: claim holding scopes (space-separated string or list).
        client_id_claim: claim holding the OAuth client id (``azp`` is the fallback).
        required_typ: when set, the JWT ``typ`` header must equal it (e.g. ``at+jwt``).
    """

    issuer: str
    audience: str
    jwks_uri: str | None = None
    algorithms: frozenset[str] = DEFAULT_ALGORITHMS
    subject_claim: str = "sub"
    tenant: str | None = None
    tenant_claim: str | None = None
    allowed_tenants: frozenset[str] | None = None
    scope_claim: str = "scope"
    client_id_claim: str = "client_id"
    required_typ: str | None = None
    _canonical_audience: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ConfigError("identity.issuers[].issuer must not be empty")
        if not self.audience:
            raise ConfigError(f"identity issuer {self.issuer!r}: audience must not be empty")
        if not self.algorithms:
            raise ConfigError(f"identity issuer {self.issuer!r}: algorithms must not be empty")
        bad = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if bad:
            raise ConfigError(
                f"identity issuer {self.issuer!r}: algorithms {sorted(bad)} not allowed "
                f"(choose from {sorted(ASYMMETRIC_ALGORITHMS)})"
            )
        object.__setattr__(self, "_canonical_audience", canonical_resource(self.audience))

    @property
    def canonical_audience(self) -> str:
        return self._canonical_audience
