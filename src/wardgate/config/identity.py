"""Configuration of identity at the edge: TLS termination and caller authentication."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from wardgate.config._base import StrictModel as _Strict
from wardgate.errors import ConfigError
from wardgate.identity.introspection import IntrospectionConfig, Secret
from wardgate.identity.issuer import DEFAULT_ALGORITHMS, IssuerConfig
from wardgate.tls.settings import TlsSettings

__all__ = [
    "AuthConfig",
    "IntrospectionEntry",
    "IssuerEntry",
    "JweConfig",
    "RouteAuthConfig",
    "SpiffeEntry",
    "TlsConfig",
]


class TlsConfig(_Strict):
    """``[server.tls]``: the gateway terminates TLS itself. See docs/tls.md."""

    cert_file: str
    key_file: str
    server_names: tuple[str, ...] = Field(min_length=1)
    min_version: Literal["1.2", "1.3"] = "1.3"
    ciphersuites: tuple[str, ...] = ("TLS_AES_256_GCM_SHA384",)
    groups: tuple[str, ...] = ("X25519",)
    client_ca_file: str | None = None
    client_cert: Literal["none", "optional", "required"] = "none"
    reload_interval_seconds: float | None = Field(5.0, ge=0)

    def settings(self) -> TlsSettings:
        """Raises: ConfigError: the settings are inconsistent."""
        return TlsSettings(
            cert_file=Path(self.cert_file),
            key_file=Path(self.key_file),
            server_names=self.server_names,
            min_version=self.min_version,
            ciphersuites=self.ciphersuites,
            groups=self.groups,
            client_ca_file=Path(self.client_ca_file) if self.client_ca_file else None,
            client_cert=self.client_cert,
            reload_interval_seconds=self.reload_interval_seconds,
        )


class JweConfig(_Strict):
    """``[server.jwe]``: JSON-RPC bodies encrypted end to end (ECDH-ES + A256GCM).

    See docs/jwe.md. Off unless this section is present.
    """

    #: PEM private key (EC P-256 or X25519) of the gateway.
    key_file: str
    #: PEM private key (EC P-256 or Ed25519) that signs every response before it is
    #: encrypted. Default: a P-256 key derived from ``key_file`` (HKDF).
    signing_key_file: str | None = None
    #: Refuse plain ``application/json`` bodies (415) once clients all encrypt.
    required: bool = False


class IssuerEntry(_Strict):
    """``[[auth.issuers]]``: one trusted OAuth 2.1 / OIDC token issuer."""

    issuer: str
    #: The resource this gateway is to that issuer (RFC 8707); default ``auth.resource``.
    audience: str | None = None
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = tuple(sorted(DEFAULT_ALGORITHMS))
    subject_claim: str = "sub"
    tenant: str | None = None
    tenant_claim: str | None = None
    allowed_tenants: tuple[str, ...] | None = None
    scope_claim: str = "scope"
    client_id_claim: str = "client_id"
    #: The JWT ``typ`` header must equal exactly this (strict RFC 9068: ``at+jwt``).
    required_typ: str | None = None
    #: ``typ`` values taken as access tokens (case-insensitive, ``application/`` optional).
    accepted_typs: tuple[str, ...] = Field(("at+jwt", "JWT"), min_length=1)
    #: Accept tokens without ``typ``.
    allow_missing_typ: bool = False
    #: Accept tokens carrying ID-token claims (``nonce``, ``at_hash``, ``c_hash``).
    allow_id_token_claims: bool = False
    #: More ``aud`` values that name this resource at this issuer (an app id URI).
    audience_aliases: tuple[str, ...] = ()
    #: Claims whose values count as scopes too (``roles``; ``/realm_access/roles``).
    role_claims: tuple[str, ...] = ()

    def issuer_config(self, default_audience: str) -> IssuerConfig:
        """Raises: ConfigError: an algorithm is not allowed."""
        return IssuerConfig(
            issuer=self.issuer,
            audience=self.audience or default_audience,
            jwks_uri=self.jwks_uri,
            algorithms=frozenset(self.algorithms),
            subject_claim=self.subject_claim,
            tenant=self.tenant,
            tenant_claim=self.tenant_claim,
            allowed_tenants=frozenset(self.allowed_tenants) if self.allowed_tenants else None,
            scope_claim=self.scope_claim,
            client_id_claim=self.client_id_claim,
            required_typ=self.required_typ,
            accepted_typs=frozenset(self.accepted_typs),
            allow_missing_typ=self.allow_missing_typ,
            allow_id_token_claims=self.allow_id_token_claims,
            audience_aliases=frozenset(self.audience_aliases),
            role_claims=self.role_claims,
        )


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class IntrospectionEntry(_Strict):
    """``[auth.introspection]``: opaque access tokens checked by RFC 7662 introspection.

    The client secret is never written here: ``client_secret_env`` names the
    environment variable that holds it.
    """

    endpoint: str
    client_id: str = Field(min_length=1)
    client_secret_env: str
    #: The authorization server; an answer's ``iss``, when present, must equal it.
    issuer: str = Field(min_length=1)
    #: The resource this gateway is (RFC 8707); default ``auth.resource``.
    audience: str | None = None
    #: Refuse answers without ``aud``; turn off only for a server that never sends it.
    require_audience: bool = True
    #: Refuse answers without ``exp``.
    require_exp: bool = True
    subject_claim: str = "sub"
    tenant: str | None = None
    tenant_claim: str | None = None
    allowed_tenants: tuple[str, ...] | None = None
    scope_claim: str = "scope"
    client_id_claim: str = "client_id"
    #: A positive answer is reused at most this long (and never past ``exp``).
    cache_max_seconds: float = Field(60.0, ge=0, le=3600)
    cache_size: int = Field(10_000, ge=0)
    timeout_seconds: float = Field(5.0, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict) and "client_secret" in data:
            raise ValueError(
                "never put the client secret in the config file: name the environment "
                "variable that holds it in client_secret_env"
            )
        return data

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without a fragment")
        return value

    @field_validator("client_secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name")
        return value

    def introspection_config(
        self, default_audience: str, environ: Mapping[str, str]
    ) -> IntrospectionConfig:
        """Raises: ConfigError: the secret's environment variable is unset or empty."""
        secret = environ.get(self.client_secret_env)
        if not secret:
            raise ConfigError(
                f"auth.introspection.client_secret_env: environment variable "
                f"{self.client_secret_env} is not set"
            )
        return IntrospectionConfig(
            endpoint=self.endpoint,
            client_id=self.client_id,
            client_secret=Secret(secret),
            issuer=self.issuer,
            audience=self.audience or default_audience,
            require_audience=self.require_audience,
            require_exp=self.require_exp,
            subject_claim=self.subject_claim,
            tenant=self.tenant,
            tenant_claim=self.tenant_claim,
            allowed_tenants=frozenset(self.allowed_tenants) if self.allowed_tenants else None,
            scope_claim=self.scope_claim,
            client_id_claim=self.client_id_claim,
            cache_max_seconds=self.cache_max_seconds,
            cache_size=self.cache_size,
            timeout_seconds=self.timeout_seconds,
        )


class SpiffeEntry(_Strict):
    """``[auth.spiffe]``: workloads proven by mTLS with a SPIFFE id."""

    #: Trust domain -> PEM file of its CA bundle.
    trust_bundles: dict[str, str] = Field(min_length=1)
    #: Trust domain -> tenant of its workloads.
    tenants: dict[str, str] = Field(default_factory=dict)


class AuthConfig(_Strict):
    """``[auth]``: every request must carry a proven identity."""

    #: This gateway's resource identifier: tokens must name it in ``aud`` (RFC 8707)
    #: and Protected Resource Metadata (RFC 9728) advertises it.
    resource: str
    #: The external base URL clients use (``https://mcp.example.com``): DPoP ``htu`` is
    #: checked against it and metadata URLs are built from it. Default: the listener's
    #: own address (required with DPoP on a non-loopback listener; never the Host header).
    public_url: str | None = None
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    issuers: tuple[IssuerEntry, ...] = ()
    #: Opaque (non-JWT) access tokens, checked at the authorization server.
    introspection: IntrospectionEntry | None = None
    spiffe: SpiffeEntry | None = None
    dpop: bool = True
    dpop_max_age_seconds: float = Field(60.0, gt=0, le=600)
    require_bound_tokens: bool = False
    max_clock_skew_seconds: float = Field(60.0, ge=0, le=300)
    #: 421 tells a prober nothing; 401 + WWW-Authenticate serves OAuth discovery.
    failure_status: Literal[401, 421] = 421
    #: Every authentication failure is answered no sooner than this after the request
    #: arrived (timing parity); a JWKS refetch for an unknown ``kid`` waits at most 60%
    #: of it.
    failure_floor_ms: float = Field(50.0, ge=0, le=5000)
    #: What Protected Resource Metadata reveals: ``full``, ``minimal`` (``resource`` and
    #: ``authorization_servers`` only) or ``off`` (answered like an unknown path).
    #: Default: ``full`` when any route answers 401, else ``off``.
    metadata_exposure: Literal["full", "minimal", "off"] | None = None
    replay_store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "wardgate:"
    #: Allow JWKS / discovery / introspection over plain HTTP to loopback (tests and
    #: local IdPs only).
    allow_loopback_jwks: bool = False

    @field_validator("resource", "public_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ValueError("must be an absolute http(s) URL without a fragment")
        return value.rstrip("/")

    def check_listener(self, loopback: bool) -> None:
        """What the listener's address demands of this section (``GatewayConfig`` calls it).

        Raises:
            ValueError: DPoP (or 401 challenges) on a non-loopback listener without
                ``public_url``: a proof's ``htu`` must be checked against, and a challenge
                must name, the URL clients use, which only the operator knows (the
                ``Host`` header is the client's to choose).
        """
        if self.public_url is not None or loopback:
            return
        if self.dpop:
            raise ValueError(
                "auth.public_url is required when DPoP is on and the listener is not on "
                "loopback (proofs are checked against it, never the Host header); set "
                "auth.public_url, or auth.dpop = false"
            )
        if self.failure_status == 401:
            raise ValueError(
                "auth.public_url is required for failure_status = 401 on a non-loopback "
                "listener: the challenge names the metadata URL clients must reach"
            )

    @model_validator(mode="after")
    def _something_to_check(self) -> AuthConfig:
        if not self.issuers and self.spiffe is None and self.introspection is None:
            raise ValueError("auth needs at least one issuer, an introspection or a spiffe section")
        return self


class RouteAuthConfig(_Strict):
    """``[routes.NAME.auth]``: what a caller needs on this route."""

    #: Scopes every call on the route needs.
    required_scopes: tuple[str, ...] = ()
    #: Tool glob -> scopes a call of a matching tool needs (``insufficient_scope`` else).
    tool_scopes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: The token's ``amr`` must hold one of these (e.g. ``["hwk", "fido"]`` for FIDO2).
    mfa_amr: tuple[str, ...] = ()
    #: The token's ``acr`` must be one of these.
    acr_values: tuple[str, ...] = ()
    #: Overrides ``auth.failure_status`` for this route.
    failure_status: Literal[401, 421] | None = None
