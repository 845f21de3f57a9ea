"""DPoP proof verification (RFC 9449 §4.3) with a shared replay cache.

Error tree addition::

    AuthenticationFailed
    └── DpopNonceRequired   wardgate.dpop_nonce_required  401  (data: {"dpop_nonce": …})
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity._jose import b64url_sha256, split_unverified, verify_signature
from wardgate.identity.claims import ClaimError, time_claim
from wardgate.identity.issuer import ASYMMETRIC_ALGORITHMS
from wardgate.state.store import Clock, StateStore

__all__ = [
    "DpopConfig",
    "DpopNonceRequired",
    "DpopNonces",
    "DpopVerifier",
    "normalize_htu",
]

_LABEL = "dpop"
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_JTI_LENGTH = 256


class DpopNonceRequired(AuthenticationFailed):
    """The proof lacks a valid server nonce; send ``DPoP-Nonce`` with ``data['dpop_nonce']``."""

    code: ClassVar[str] = "wardgate.dpop_nonce_required"


def _fail(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(f"{_LABEL}: {reason}")


def normalize_htu(url: str) -> str:
    """The ``htu`` comparison form: lowercase scheme and host, no default port,
    no query or fragment, empty path as ``/`` (RFC 9449 §4.3, RFC 3986 §6.2.2-3).

    Raises:
        AuthenticationFailed: ``url`` is not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _fail(f"unparsable URL {url!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise _fail(f"not an absolute http(s) URL: {url!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


@dataclass(frozen=True, slots=True)
class DpopConfig:
    """DPoP acceptance rules.

    Attributes:
        algorithms: allowed proof algorithms (asymmetric only).
        max_age_seconds: how old a proof's ``iat`` may be.
        max_clock_skew: how far in the future ``iat`` may be.
        require_nonce: demand a server nonce (needs a :class:`DpopNonces`).
    """

    algorithms: frozenset[str] = frozenset({"ES256", "PS256", "RS256", "EdDSA", "Ed25519"})
    max_age_seconds: float = 60.0
    max_clock_skew: float = 5.0
    require_nonce: bool = False

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if not self.algorithms or bad:
            raise ConfigError(f"identity.dpop.algorithms: not allowed {sorted(bad)}")
        if not (0 < self.max_age_seconds <= 600 and 0 <= self.max_clock_skew <= 60):
            raise ConfigError("identity.dpop: max_age_seconds within 0..600, skew within 0..60")


class DpopNonces:
    """Stateless server nonces (RFC 9449 §8): an HMAC over a time window.

    Every replica sharing ``secret`` accepts the others' nonces; a nonce is valid in
    its window and the next one.
    """

    def __init__(
        self, secret: bytes, *, window_seconds: float = 300.0, clock: Clock = time.time
    ) -> None:
        """Derive nonces from ``secret`` (shared by all replicas).

        Raises:
            ConfigError: ``secret`` shorter than 32 bytes or a non-positive window.
        """
        if len(secret) < 32:
            raise ConfigError("identity.dpop.nonce_secret must be at least 32 bytes")
        if window_seconds <= 0:
            raise ConfigError("identity.dpop.nonce_window_seconds must be positive")
        self._secret = secret
        self._window = window_seconds
        self._clock = clock

    def __repr__(self) -> str:
        return f"DpopNonces(secret=***, window_seconds={self._window})"

    def _make(self, window: int) -> str:
        counter = struct.pack(">Q", window)
        mac = hmac.new(self._secret, counter, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(counter + mac).rstrip(b"=").decode("ascii")

    def _window_now(self) -> int:
        return int(self._clock() // self._window)

    def current(self) -> str:
        """The nonce to hand out now."""
        return self._make(self._window_now())

    def is_valid(self, nonce: str) -> bool:
        """Whether ``nonce`` was issued in this window or the previous one."""
        now = self._window_now()
        return any(hmac.compare_digest(nonce, self._make(w)) for w in (now, now - 1))


@functools.lru_cache(maxsize=4096)
def _import_public_key(members: tuple[tuple[str, str], ...]) -> tuple[Key, str]:
    """Import (and validate) a public JWK once: a client signs many proofs with one key.

    Bounded and keyed by the key's own members, so it holds nothing secret.
    """
    key = JWKRegistry.import_key(dict(members))
    return key, key.thumbprint()


class DpopVerifier:
    """Checks DPoP proofs; each ``jti`` is accepted once across all replicas."""

    def __init__(
        self,
        store: StateStore,
        *,
        config: DpopConfig | None = None,
        nonces: DpopNonces | None = None,
        clock: Clock = time.time,
        key_prefix: str = "dpop:jti:",
    ) -> None:
        """Wire the replay cache; no I/O.

        Raises:
            ConfigError: a nonce is required but no :class:`DpopNonces` is given.
        """
        self._config = config or DpopConfig()
        if self._config.require_nonce and nonces is None:
            raise ConfigError("identity.dpop.require_nonce needs a nonce secret")
        self._store = store
        self._nonces = nonces
        self._clock = clock
        self._prefix = key_prefix

    async def verify(
        self, proof: str, *, method: str, url: str | Sequence[str], access_token: str | None
    ) -> str:
        """Verify one proof for this request and return its key's RFC 7638 thumbprint.

        ``url`` is the request's URL as the gateway knows it (its configured public
        URL), or several equivalent spellings of it; ``htu`` must name one of them.

        ``access_token`` is required for a resource request (``ath`` is then checked);
        the caller compares the returned thumbprint with the token's ``cnf.jkt``.

        Raises:
            DpopNonceRequired: a nonce is required and missing, stale or forged.
            AuthenticationFailed: any other defect, including a replayed ``jti``.
            StateStoreUnavailable: the replay cache failed (the caller denies).
        """
        cfg = self._config
        header, _ = split_unverified(proof, _LABEL)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() != "dpop+jwt":
            raise _fail(f"typ {typ!r} is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in cfg.algorithms:
            raise _fail(f"alg {alg!r} not allowed")
        key, jkt = self._proof_key(header.get("jwk"), alg)
        claims = verify_signature(proof, key, [alg], _LABEL)

        htm = claims.get("htm")
        if htm != method:
            raise _fail(f"htm {htm!r} does not match method {method!r}")
        htu = claims.get("htu")
        urls = [url] if isinstance(url, str) else list(url)
        targets = {normalize_htu(u) for u in urls}
        if not isinstance(htu, str) or normalize_htu(htu) not in targets:
            raise _fail(f"htu {htu!r} does not match {normalize_htu(urls[0])!r}")
        self._check_iat(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise _fail("jti missing or too long")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str):
                raise _fail("ath missing")
            expected = b64url_sha256(access_token.encode("ascii", "replace"))
            if not hmac.compare_digest(ath, expected):
                raise _fail("ath does not match the access token")
        self._check_nonce(claims)

        ttl = cfg.max_age_seconds + 2 * cfg.max_clock_skew
        replay_key = self._prefix + b64url_sha256(f"{jkt}\x00{jti}".encode())
        if not await self._store.add_once(replay_key, ttl):
            raise _fail(f"jti {jti!r} replayed")
        return jkt

    @staticmethod
    def _proof_key(jwk: Any, alg: str) -> tuple[Key, str]:
        """The proof's public key and its RFC 7638 thumbprint."""
        if not isinstance(jwk, dict):
            raise _fail("header has no jwk object")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise _fail("jwk contains private key material")
        if jwk.get("kty") != _KTY.get(alg[:2]):
            raise _fail(f"jwk kty {jwk.get('kty')!r} does not fit alg {alg}")
        if not all(isinstance(v, str) for v in jwk.values()):
            raise _fail("jwk members must be strings")
        try:
            return _import_public_key(tuple(sorted(jwk.items())))
        except (JoseError, ValueError, TypeError) as exc:
            raise _fail(f"unusable jwk: {exc}") from exc

    def _check_iat(self, claims: dict[str, Any]) -> None:
        try:
            iat = time_claim(claims, "iat", required=True)
        except ClaimError as exc:
            raise _fail(f"iat: {exc}") from None
        assert iat is not None
        now = self._clock()
        if iat > now + self._config.max_clock_skew:
            raise _fail(f"iat {iat} is in the future (now {now:.0f})")
        if iat < now - self._config.max_age_seconds:
            raise _fail(f"iat {iat} is stale (now {now:.0f})")

    def _check_nonce(self, claims: dict[str, Any]) -> None:
        if self._nonces is None:
            return
        nonce = claims.get("nonce")
        if nonce is None and not self._config.require_nonce:
            return
        if not isinstance(nonce, str) or not self._nonces.is_valid(nonce):
            raise DpopNonceRequired(
                "dpop: nonce missing or invalid", data={"dpop_nonce": self._nonces.current()}
            )
