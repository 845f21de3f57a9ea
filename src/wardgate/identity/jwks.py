"""Issuer signing keys: discovery, fetch, cache with TTL, rate-limited refetch.

``kid`` from a token is only ever a dictionary key here: it never becomes a path,
a URL or a query. ``jku`` / ``x5u`` / ``jwk`` headers are never consulted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from wardgate.errors import AuthenticationFailed, ConfigError
from wardgate.identity.issuer import IssuerConfig
from wardgate.net.fetch import FetchRefused, SafeFetcher
from wardgate.state.store import Clock

__all__ = ["JwksCache", "discovery_urls"]

log = logging.getLogger(__name__)

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KTY_FOR_ALG_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
MAX_KID_LENGTH = 256
MAX_KEYS = 64


def discovery_urls(issuer: str) -> list[str]:
    """Metadata URLs to try for ``issuer``, in the order of RFC 8414 §3 and MCP §3.5."""
    parts = urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [
            f"{base}/.well-known/oauth-authorization-server",
            f"{base}/.well-known/openid-configuration",
        ]
    return [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]


def _kty_for(alg: str) -> str:
    return _KTY_FOR_ALG_PREFIX.get(alg[:2], "?")


class JwksCache:
    """The verification keys of one issuer.

    Keys are cached for ``ttl_seconds``. An unknown ``kid`` triggers a refetch at most
    once per ``min_refetch_seconds`` (so forged kids cannot make us hammer the IdP).
    If a refetch fails the last good key set keeps serving.
    """

    def __init__(
        self,
        config: IssuerConfig,
        fetcher: SafeFetcher,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._config = config
        self._fetcher = fetcher
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._jwks_uri = config.jwks_uri
        self._by_kid: dict[str, Key] = {}
        self._all: list[Key] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Check the URLs and try a first fetch.

        An unreachable IdP at boot is logged, not fatal: requests fail closed until
        the keys arrive.

        Raises:
            ConfigError: a configured URL is refused by the fetch policy outright.
        """
        for url in [self._config.issuer] + ([self._jwks_uri] if self._jwks_uri else []):
            try:
                self._fetcher.check_url(url)
            except FetchRefused as exc:
                raise ConfigError(f"identity issuer {self._config.issuer!r}: {exc}") from exc
        try:
            await self._refresh()
        except FetchRefused as exc:
            log.warning("initial JWKS fetch for %s failed: %s", self._config.issuer, exc)

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key that must have signed a token with this ``kid`` and ``alg``.

        Raises:
            AuthenticationFailed: no such key (after a permitted refetch), an ambiguous
                key-less lookup, or the keys cannot be fetched.
        """
        if kid is not None and (not kid or len(kid) > MAX_KID_LENGTH):
            raise AuthenticationFailed("jwt: kid empty or too long")
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._ttl:
            await self._try_refresh(now, reason="ttl")
        key = self._lookup(kid, alg)
        if key is None and self._may_refetch(self._clock()):
            await self._try_refresh(self._clock(), reason="unknown kid")
            key = self._lookup(kid, alg)
        if key is None:
            if self._fetched_at is None:
                raise AuthenticationFailed(
                    f"jwt: no keys available for issuer {self._config.issuer!r}"
                )
            raise AuthenticationFailed(
                f"jwt: no {_kty_for(alg)} key for kid={kid!r} alg={alg} "
                f"at issuer {self._config.issuer!r}"
            )
        return key

    def _may_refetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch

    def _lookup(self, kid: str | None, alg: str) -> Key | None:
        if kid is not None:
            key = self._by_kid.get(kid)
            return key if key is not None and self._fits(key, alg) else None
        fitting = [k for k in self._all if self._fits(k, alg)]
        return fitting[0] if len(fitting) == 1 else None

    @staticmethod
    def _fits(key: Key, alg: str) -> bool:
        if key.key_type != _kty_for(alg):
            return False
        key_alg = key.get("alg")
        return key_alg is None or key_alg == alg

    async def _try_refresh(self, now: float, *, reason: str) -> None:
        if not self._may_refetch(now):
            return
        try:
            await self._refresh()
        except FetchRefused as exc:
            log.warning("JWKS refresh (%s) for %s failed: %s", reason, self._config.issuer, exc)

    async def _refresh(self) -> None:
        started = self._clock()
        async with self._lock:
            if self._attempted_at is not None and self._attempted_at >= started:
                return  # another task refreshed while we waited
            self._attempted_at = self._clock()
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            doc = await self._fetcher.get_json(self._jwks_uri)
            by_kid, all_keys = self._parse(doc)
            self._by_kid, self._all = by_kid, all_keys
            self._fetched_at = self._clock()
            log.info("fetched %d keys for %s", len(all_keys), self._config.issuer)

    async def _discover(self) -> str:
        errors: list[str] = []
        for url in discovery_urls(self._config.issuer):
            try:
                meta = await self._fetcher.get_json(url)
            except FetchRefused as exc:
                errors.append(str(exc))
                continue
            if meta.get("issuer") != self._config.issuer:
                errors.append(f"{url}: issuer {meta.get('issuer')!r} does not match")
                continue
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                errors.append(f"{url}: no jwks_uri")
                continue
            self._fetcher.check_url(jwks_uri)
            return jwks_uri
        raise FetchRefused("discovery failed: " + "; ".join(errors))

    def _parse(self, doc: dict[str, Any]) -> tuple[dict[str, Key], list[Key]]:
        raw = doc.get("keys")
        if not isinstance(raw, list):
            raise FetchRefused("JWKS has no 'keys' list")
        by_kid: dict[str, Key] = {}
        all_keys: list[Key] = []
        for item in raw[:MAX_KEYS]:
            if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # symmetric or unknown keys are never trusted
            if _PRIVATE_MEMBERS & item.keys() or item.get("use", "sig") != "sig":
                continue
            try:
                key = JWKRegistry.import_key(item)
            except (JoseError, ValueError, TypeError) as exc:
                log.warning("skipping unusable JWK from %s: %s", self._config.issuer, exc)
                continue
            all_keys.append(key)
            kid = item.get("kid")
            if isinstance(kid, str) and kid:
                by_kid[kid] = key
        return by_kid, all_keys
