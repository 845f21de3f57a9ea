"""JWT access-token verification for several issuers (RFC 9068, RFC 8707, RFC 8725).

The unverified ``iss`` only selects which issuer's rules apply; everything used
afterwards comes from the verified payload.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import claims as claim_rules
from wardgate.identity._jose import split_unverified, verify_signature
from wardgate.identity.issuer import IssuerConfig, normalize_typ
from wardgate.identity.jwks import JwksCache
from wardgate.net.fetch import FetchPolicy, SafeFetcher
from wardgate.state.store import Clock

__all__ = ["JwtVerifier", "VerifiedToken"]

_LABEL = "jwt"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A verified access token and the values mapped from it."""

    issuer: IssuerConfig
    subject: str
    tenant: str | None
    client_id: str | None
    scopes: frozenset[str]
    cnf: Mapping[str, str]
    expires_at: float
    claims: Mapping[str, Any] = field(repr=False)


def _fail(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"{_LABEL}: {reason}")


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    try:
        return claim_rules.time_claim(claims, name, required=required)
    except claim_rules.ClaimError as exc:
        raise _fail(str(exc)) from None


#: Claims only an ID token carries (OIDC Core §2, §3.1.3.6, §3.3.2.11).
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")


class JwtVerifier:
    """Verifies JWT access tokens from a fixed set of issuers.

    Verified tokens are cached by SHA-256 of the token until they expire.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        *,
        fetch_policy: FetchPolicy | None = None,
        fetcher: SafeFetcher | None = None,
        clock: Clock = time.time,
        max_clock_skew: float = 60.0,
        jwks_ttl_seconds: float = 300.0,
        jwks_min_refetch_seconds: float = 30.0,
        jwks_max_wait_seconds: float = 2.0,
        jwks_clock: Clock = time.monotonic,
        cache_size: int = 10_000,
    ) -> None:
        """Build the verifier; no I/O until :meth:`start`.

        ``clock`` is wall-clock time (``exp``/``nbf``/``iat``); ``jwks_clock`` is
        monotonic time for key-cache ages. ``jwks_max_wait_seconds`` bounds how long a
        request with an unknown ``kid`` waits for a refetch (keep it under the edge's
        failure floor, so a slow IdP cannot be seen in the refusal's timing).

        Raises:
            ConfigError: no issuers, a duplicated issuer, or a bad skew/cache size.
        """
        if not issuers:
            raise ConfigError("identity: at least one issuer is required")
        if not 0 <= max_clock_skew <= 300:
            raise ConfigError("identity.max_clock_skew must be within 0..300 seconds")
        if cache_size < 0:
            raise ConfigError("identity.token_cache_size must not be negative")
        self._issuers: dict[str, IssuerConfig] = {}
        for cfg in issuers:
            if cfg.issuer in self._issuers:
                raise ConfigError(f"identity: issuer {cfg.issuer!r} configured twice")
            self._issuers[cfg.issuer] = cfg
        self._fetcher = fetcher or SafeFetcher(fetch_policy or FetchPolicy())
        self._owns_fetcher = fetcher is None
        self._keys = {
            name: JwksCache(
                cfg,
                self._fetcher,
                ttl_seconds=jwks_ttl_seconds,
                min_refetch_seconds=jwks_min_refetch_seconds,
                max_wait_seconds=jwks_max_wait_seconds,
                clock=jwks_clock,
            )
            for name, cfg in self._issuers.items()
        }
        self._clock = clock
        self._skew = max_clock_skew
        self._cache_size = cache_size
        self._cache: dict[bytes, VerifiedToken] = {}

    @property
    def issuers(self) -> Mapping[str, IssuerConfig]:
        return MappingProxyType(self._issuers)

    async def start(self) -> None:
        """Open the fetcher and prefetch every issuer's keys.

        Raises:
            ConfigError: an issuer or JWKS URL is refused by the fetch policy.
        """
        await self._fetcher.start()
        for cache in self._keys.values():
            await cache.start()

    async def aclose(self) -> None:
        """Stop the key refreshes, release the fetcher (if owned), forget cached tokens."""
        self._cache.clear()
        for cache in self._keys.values():
            await cache.aclose()
        if self._owns_fetcher:
            await self._fetcher.aclose()

    async def verify(self, token: str) -> VerifiedToken:
        """Verify a JWT access token.

        Raises:
            AuthenticationFailed: for any reason the token is not acceptable; the
                detail names the reason for the log.
        """
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None:
            if now < hit.expires_at + self._skew:
                return hit
            del self._cache[digest]

        header, unverified = split_unverified(token, _LABEL)
        iss = unverified.get("iss")
        cfg = self._issuers.get(iss) if isinstance(iss, str) else None
        if cfg is None:
            raise _fail(f"untrusted issuer {iss!r}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in cfg.algorithms:
            raise _fail(f"alg {alg!r} not allowed for issuer {cfg.issuer!r}")
        self._check_typ(header, cfg)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _fail("kid is not a string")
        key = await self._keys[cfg.issuer].key_for(kid, alg)
        claims = verify_signature(token, key, [alg], _LABEL)
        result = self._check_claims(claims, cfg, now)
        self._remember(digest, result, now)
        return result

    @staticmethod
    def _check_typ(header: Mapping[str, Any], cfg: IssuerConfig) -> None:
        """Only what is declared an access token passes (RFC 8725 §3.11: explicit typing)."""
        typ = header.get("typ")
        if typ is None:
            if cfg.allow_missing_typ and cfg.required_typ is None:
                return
            raise _fail("typ missing (not declared an access token)")
        if not isinstance(typ, str):
            raise _fail("typ is not a string")
        norm = normalize_typ(typ)
        if norm == "dpop+jwt":
            raise _fail("a DPoP proof is not an access token")
        if cfg.required_typ is not None:
            if norm != normalize_typ(cfg.required_typ):
                raise _fail(f"typ {typ!r} is not {cfg.required_typ!r}")
        elif norm not in cfg.accepted_typs:
            raise _fail(f"typ {typ[:40]!r} is not an access token's")

    @staticmethod
    def _check_not_id_token(claims: Mapping[str, Any], cfg: IssuerConfig) -> None:
        """Refuse what looks like an ID token: a client must never log in to us with one."""
        if cfg.allow_id_token_claims:
            return
        found = [c for c in _ID_TOKEN_CLAIMS if c in claims]
        if found:
            raise _fail(f"carries {found} (an ID token, not an access token)")
        # Keycloak's own payload ``typ`` and Cognito's ``token_use`` say what a token is.
        for name, id_value in (("typ", "id"), ("token_use", "id")):
            value = claims.get(name)
            if isinstance(value, str) and value.lower() == id_value:
                raise _fail(f"claim {name}={value!r} (an ID token, not an access token)")

    def _check_claims(self, claims: dict[str, Any], cfg: IssuerConfig, now: float) -> VerifiedToken:
        if claims.get("iss") != cfg.issuer:
            raise _fail("verified iss differs")
        self._check_not_id_token(claims, cfg)
        exp = _number(claims, "exp", required=True)
        assert exp is not None
        if now >= exp + self._skew:
            raise _fail(f"expired at {exp:.0f} (now {now:.0f})")
        nbf = _number(claims, "nbf", required=False)
        if nbf is not None and now < nbf - self._skew:
            raise _fail(f"not valid before {nbf:.0f} (now {now:.0f})")
        iat = _number(claims, "iat", required=False)
        if iat is not None and iat > now + self._skew:
            raise _fail(f"issued in the future ({iat:.0f}, now {now:.0f})")

        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not auds or not all(isinstance(a, str) for a in auds):
            raise _fail("aud missing or malformed")
        if not any(cfg.names_this_resource(a) for a in auds):
            raise _fail(f"aud {auds!r} does not contain {cfg.audience!r}")

        subject = claims.get(cfg.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _fail(f"subject claim {cfg.subject_claim!r} missing")
        try:
            tenant = claim_rules.tenant(claims, cfg.tenant, cfg.tenant_claim, cfg.allowed_tenants)
            scopes = claim_rules.scopes(claims, cfg.scope_claim)
            for role_claim in cfg.role_claims:
                scopes |= claim_rules.scopes(claims, role_claim)
            cnf = claim_rules.confirmation(claims)
        except claim_rules.ClaimError as exc:
            raise _fail(f"{exc} (issuer {cfg.issuer!r})") from None
        return VerifiedToken(
            issuer=cfg,
            subject=subject,
            tenant=tenant,
            client_id=self._client_id(claims, cfg),
            scopes=scopes,
            cnf=cnf,
            expires_at=exp,
            claims=MappingProxyType(claims),
        )

    @staticmethod
    def _client_id(claims: Mapping[str, Any], cfg: IssuerConfig) -> str | None:
        for name in (cfg.client_id_claim, "azp"):
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    def _remember(self, digest: bytes, token: VerifiedToken, now: float) -> None:
        if self._cache_size == 0:
            return
        if len(self._cache) >= self._cache_size:
            for d in [d for d, t in self._cache.items() if t.expires_at + self._skew <= now]:
                del self._cache[d]
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = token
