"""Opaque access tokens, checked by OAuth 2.0 Token Introspection (RFC 7662).

The gateway authenticates to the introspection endpoint as an OAuth client
(``client_secret_basic``), asks about one token and trusts only an answer that says
``active``, names the configured issuer (when it names one), carries this gateway in
``aud`` (RFC 8707) and has not expired. Positive answers are cached by SHA-256 of the
token, never longer than ``cache_max_seconds`` nor past ``exp``; negative answers are
not cached. Every failure, the endpoint's included, is :class:`AuthenticationFailed`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity import claims as claim_rules
from wardgate.identity.issuer import canonical_resource
from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher
from wardgate.state.store import Clock

__all__ = ["IntrospectedToken", "IntrospectionConfig", "IntrospectionVerifier", "Secret"]

_LABEL = "introspection"
_ACCESS_TOKEN_TYPES = frozenset({"bearer", "dpop"})
#: An introspection answer is a handful of claims; anything near this is not one.
#: At most this many introspection requests in flight at once; others wait (bounded).
MAX_CONCURRENT_INTROSPECTIONS = 16
#: How long an inactive or unacceptable token is refused without asking again.
NEGATIVE_CACHE_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024


class Secret:
    """A string that never shows itself in a ``repr`` or ``str`` (logs, tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class IntrospectionConfig:
    """Where to introspect, as whom, and what an acceptable answer looks like.

    Attributes:
        endpoint: the introspection endpoint URL (https; http only to loopback in tests).
        client_id: the gateway's client id at the authorization server.
        client_secret: its secret (``client_secret_basic``).
        issuer: the authorization server; an answer's ``iss``, when present, must equal it.
        audience: this gateway's resource identifier; ``aud`` must contain it.
        require_audience: refuse an answer without ``aud`` (turn off only for an
            authorization server that never sends one).
        require_exp: refuse an answer without ``exp``.
        subject_claim: member holding the subject; ``client_id`` when absent
            (client-credentials tokens have no resource owner).
        tenant, tenant_claim, allowed_tenants, scope_claim, client_id_claim: as for
            :class:`~wardgate.identity.IssuerConfig`.
        cache_max_seconds: the longest a positive answer is reused (0: never).
        cache_size: the most answers kept.
        timeout_seconds: the whole introspection request, connect to last byte.
    """

    endpoint: str
    client_id: str
    client_secret: Secret = field(repr=False)
    issuer: str
    audience: str
    require_audience: bool = True
    require_exp: bool = True
    subject_claim: str = "sub"
    tenant: str | None = None
    tenant_claim: str | None = None
    allowed_tenants: frozenset[str] | None = None
    scope_claim: str = "scope"
    client_id_claim: str = "client_id"
    cache_max_seconds: float = 60.0
    cache_size: int = 10_000
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        for name in ("endpoint", "client_id", "issuer", "audience"):
            if not getattr(self, name):
                raise ConfigError(f"auth.introspection.{name} must not be empty")
        if not self.client_secret.reveal():
            raise ConfigError("auth.introspection: the client secret is empty")
        if self.cache_max_seconds < 0 or self.cache_size < 0:
            raise ConfigError("auth.introspection: cache limits must not be negative")
        if self.timeout_seconds <= 0:
            raise ConfigError("auth.introspection.timeout_seconds must be positive")


@dataclass(frozen=True, slots=True)
class IntrospectedToken:
    """An active access token as the authorization server described it."""

    issuer: str
    subject: str
    tenant: str | None
    client_id: str | None
    scopes: frozenset[str]
    cnf: Mapping[str, str]
    expires_at: float | None
    claims: Mapping[str, Any] = field(repr=False)


def _fail(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"{_LABEL}: {reason}")


def _number(answer: Mapping[str, Any], name: str) -> float | None:
    try:
        return claim_rules.time_claim(answer, name, required=False)
    except claim_rules.ClaimError as exc:
        raise _fail(str(exc)) from None


def _basic(client_id: str, secret: Secret) -> str:
    # RFC 6749 §2.3.1: both parts form-urlencoded before base64.
    pair = f"{quote(client_id, safe='')}:{quote(secret.reveal(), safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


class IntrospectionVerifier:
    """Asks the authorization server about opaque access tokens (RFC 7662)."""

    def __init__(
        self,
        config: IntrospectionConfig,
        *,
        allow_loopback: bool = False,
        fetcher: SafeFetcher | None = None,
        clock: Clock = time.time,
        max_clock_skew: float = 60.0,
    ) -> None:
        """Build the verifier; no I/O until :meth:`start`.

        Raises:
            ConfigError: a bad clock skew.
        """
        if not 0 <= max_clock_skew <= 300:
            raise ConfigError("auth.max_clock_skew_seconds must be within 0..300 seconds")
        self._cfg = config
        self._audience = canonical_resource(config.audience)
        if not self._audience:
            raise ConfigError("auth.introspection.audience is not a usable resource identifier")
        policy = FetchPolicy(
            timeout_seconds=config.timeout_seconds,
            max_bytes=MAX_ANSWER_BYTES,
            allow_loopback=allow_loopback,
        )
        self._fetcher = fetcher or SafeFetcher(policy)
        self._owns_fetcher = fetcher is None
        self._clock = clock
        self._skew = max_clock_skew
        self._cache: dict[bytes, tuple[float, IntrospectedToken]] = {}
        #: Tokens the server just called inactive or unacceptable: a flood of made-up
        #: tokens must not become a flood of requests to the authorization server.
        self._refused: dict[bytes, float] = {}
        self._in_flight = asyncio.Semaphore(MAX_CONCURRENT_INTROSPECTIONS)

    def __repr__(self) -> str:
        return f"IntrospectionVerifier(endpoint={self._cfg.endpoint!r})"

    @property
    def config(self) -> IntrospectionConfig:
        return self._cfg

    async def start(self) -> None:
        """Check the endpoint URL against the fetch policy and open the pool.

        Raises:
            ConfigError: the endpoint URL is refused by the fetch policy.
        """
        try:
            self._fetcher.check_url(self._cfg.endpoint)
        except FetchRefused as exc:
            raise ConfigError(f"auth.introspection.endpoint: {exc}") from None
        await self._fetcher.start()

    async def aclose(self) -> None:
        """Release the fetcher (if owned) and forget cached answers."""
        self._cache.clear()
        if self._owns_fetcher:
            await self._fetcher.aclose()

    async def verify(self, token: str) -> IntrospectedToken:
        """Introspect an opaque access token.

        Raises:
            AuthenticationFailed: the token is not active or not acceptable here, or
                the endpoint could not be asked or gave no usable answer (fail closed).
        """
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None:
            until, known = hit
            if now < until:
                return known
            del self._cache[digest]
        refused_until = self._refused.get(digest)
        if refused_until is not None and now < refused_until:
            raise _fail("token recently refused (not asked again)")
        try:
            async with asyncio.timeout(self._cfg.timeout_seconds), self._in_flight:
                answer = await self._fetcher.post_form_json(
                    self._cfg.endpoint,
                    {"token": token, "token_type_hint": "access_token"},
                    headers={"Authorization": _basic(self._cfg.client_id, self._cfg.client_secret)},
                )
        except FetchRefused as exc:
            raise _fail(f"endpoint unavailable: {exc}") from None
        except TimeoutError:
            raise _fail("introspection queue or endpoint timed out") from None
        try:
            result = self._check(answer, now)
        except AuthenticationFailed:
            self._refuse(digest, now)
            raise
        self._remember(digest, result, now)
        return result

    def _refuse(self, digest: bytes, now: float) -> None:
        """Remember a refusal briefly (bounded; expired entries go first)."""
        if len(self._refused) >= self._cfg.cache_size:
            for d in [d for d, until in self._refused.items() if until <= now]:
                del self._refused[d]
            while len(self._refused) >= self._cfg.cache_size:
                del self._refused[next(iter(self._refused))]
        self._refused[digest] = now + NEGATIVE_CACHE_SECONDS

    def _check(self, answer: dict[str, Any], now: float) -> IntrospectedToken:
        cfg = self._cfg
        if answer.get("active") is not True:
            raise _fail("token is not active")
        iss = answer.get("iss")
        if iss is not None and iss != cfg.issuer:
            raise _fail(f"iss {iss!r} is not {cfg.issuer!r}")
        token_type = answer.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in _ACCESS_TOKEN_TYPES
        ):
            raise _fail(f"token_type {token_type!r} is not an access token")

        exp = _number(answer, "exp")
        if exp is None and cfg.require_exp:
            raise _fail("missing exp")
        if exp is not None and now >= exp + self._skew:
            raise _fail(f"expired at {exp:.0f} (now {now:.0f})")
        nbf = _number(answer, "nbf")
        if nbf is not None and now < nbf - self._skew:
            raise _fail(f"not valid before {nbf:.0f} (now {now:.0f})")
        _number(answer, "iat")  # unused, but a malformed one means a malformed answer
        self._check_audience(answer)

        client_id = self._string(answer, cfg.client_id_claim)
        subject = self._string(answer, cfg.subject_claim) or client_id
        if subject is None:
            raise _fail(f"neither {cfg.subject_claim!r} nor a client id in the answer")
        try:
            cnf = claim_rules.confirmation(answer)
            tenant = claim_rules.tenant(answer, cfg.tenant, cfg.tenant_claim, cfg.allowed_tenants)
            scopes = claim_rules.scopes(answer, cfg.scope_claim)
        except claim_rules.ClaimError as exc:
            raise _fail(str(exc)) from None
        if isinstance(token_type, str) and token_type.lower() == "dpop" and "jkt" not in cnf:
            raise _fail("token_type DPoP without cnf.jkt")
        return IntrospectedToken(
            issuer=cfg.issuer,
            subject=subject,
            tenant=tenant,
            client_id=client_id,
            scopes=scopes,
            cnf=cnf,
            expires_at=exp,
            claims=MappingProxyType(answer),
        )

    def _check_audience(self, answer: Mapping[str, Any]) -> None:
        aud = answer.get("aud")
        if aud is None:
            if self._cfg.require_audience:
                raise _fail("aud missing")
            return
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not auds or not all(isinstance(a, str) for a in auds):
            raise _fail("aud malformed")
        if self._audience not in {canonical_resource(a) for a in auds}:
            raise _fail(f"aud {auds!r} does not contain {self._cfg.audience!r}")

    @staticmethod
    def _string(answer: Mapping[str, Any], name: str) -> str | None:
        value = answer.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _fail(f"{name} malformed")
        return value

    def _remember(self, digest: bytes, token: IntrospectedToken, now: float) -> None:
        until = now + self._cfg.cache_max_seconds
        if token.expires_at is not None:
            until = min(until, token.expires_at)
        if self._cfg.cache_size == 0 or until <= now:
            return
        if len(self._cache) >= self._cfg.cache_size:
            for d in [d for d, (u, _) in self._cache.items() if u <= now]:
                del self._cache[d]
            while len(self._cache) >= self._cfg.cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = (until, token)
