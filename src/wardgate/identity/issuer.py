"""Frozen configuration values for identity: issuers, DPoP and mTLS."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from wardgate.errors import ConfigError

__all__ = [
    "ACCESS_TOKEN_TYPS",
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "IssuerConfig",
    "canonical_resource",
    "normalize_typ",
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

#: ``typ`` header values accepted by default (normalized, see :func:`normalize_typ`):
#: RFC 9068's ``at+jwt`` and the generic ``JWT`` most IdPs put on access tokens.
ACCESS_TOKEN_TYPS = frozenset({"at+jwt", "jwt"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_typ(typ: str) -> str:
    """``typ`` for comparison: case-insensitive, ``application/`` optional (RFC 7515 §4.1.9)."""
    lowered = typ.lower()
    return lowered.removeprefix("application/")


def canonical_resource(value: str) -> str | None:
    """Canonical form of a resource URI for comparison (RFC 8707, MCP §Canonical URI).

    Only the MCP canonical-URI rules apply: scheme and host are compared without
    case, a default port is the same as none, and one trailing slash after a non-empty
    path is ignored (the spec prefers the form without it). Everything else must be
    equal: a URI with userinfo, a fragment, an empty or malformed port, or a host that
    is not plain ASCII never names this resource, so ``None`` is returned for it.
    Strings that are not absolute URIs (``api://…`` app ids, GUIDs) are returned
    unchanged and compare exactly.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return value
    if "@" in parts.netloc or "#" in value or not value.isascii():
        return None  # userinfo or a fragment is never part of a resource identifier
    if parts.netloc.endswith(":") or any(c.isspace() for c in value):
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path
    if path.endswith("/") and not path.endswith("//"):
        path = path[:-1]
    canonical = urlunsplit((scheme, netloc, path, "", ""))
    # An empty query ("…/mcp?") is still a different URI: keep the "?".
    return canonical + "?" + parts.query if "?" in value else canonical


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
        accepted_typs: ``typ`` values taken as access tokens (see :func:`normalize_typ`);
            anything else (an ID token's, a logout token's, ``dpop+jwt``) is refused.
        allow_missing_typ: accept a token without ``typ`` (some IdPs omit it).
        allow_id_token_claims: accept tokens carrying ``nonce``/``at_hash``/``c_hash``,
            which mark ID tokens; off by default.
        audience_aliases: more ``aud`` values that name this resource at this issuer
            (Entra's ``api://…`` app id URI or the app's client id, an Auth0 API
            identifier); each is compared by the same rules as ``audience``.
        role_claims: claims whose values are added to the scopes (Entra ``roles``,
            Auth0 ``permissions``); a name starting with ``/`` is an RFC 6901 JSON
            Pointer into nested claims (Keycloak ``/realm_access/roles``).
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
    accepted_typs: frozenset[str] = ACCESS_TOKEN_TYPS
    allow_missing_typ: bool = False
    allow_id_token_claims: bool = False
    audience_aliases: frozenset[str] = frozenset()
    role_claims: tuple[str, ...] = ()
    _audiences: frozenset[str] = field(init=False, repr=False, compare=False)

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
        if not self.accepted_typs and self.required_typ is None:
            raise ConfigError(f"identity issuer {self.issuer!r}: accepted_typs must not be empty")
        names = {self.audience, *self.audience_aliases}
        canonical = {canonical_resource(a) for a in names}
        if None in canonical or "" in canonical:
            raise ConfigError(
                f"identity issuer {self.issuer!r}: audience or alias is not a usable "
                "resource identifier (userinfo, fragment or bad port)"
            )
        object.__setattr__(self, "_audiences", frozenset(a for a in canonical if a))
        object.__setattr__(
            self, "accepted_typs", frozenset(normalize_typ(t) for t in self.accepted_typs)
        )

    @property
    def canonical_audience(self) -> str:
        """The canonical form of ``audience``."""
        canonical = canonical_resource(self.audience)
        assert canonical is not None  # checked in __post_init__
        return canonical

    def names_this_resource(self, aud: str) -> bool:
        """Whether one ``aud`` value names this gateway at this issuer."""
        return canonical_resource(aud) in self._audiences
