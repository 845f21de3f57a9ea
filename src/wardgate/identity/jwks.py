"""Issuer signing keys: discovery, fetch, cache with TTL, rate-limited refetch.

``kid`` from a token is only ever a dictionary key here: it never becomes a path,
a URL or a query. ``jku`` / ``x5u`` / ``jwk`` headers are never consulted.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """The verification keys of one issuer, kept fresh off the request path.

    A background task refetches the key set before it is ``ttl_seconds`` old (at
    ``refresh_fraction`` of the TTL), retrying every ``min_refetch_seconds`` while the
    IdP fails; the last good key set keeps serving meanwhile. A request never waits for
    that refresh. An unknown ``kid`` (or no keys at all) starts one refetch at most once
    per ``min_refetch_seconds`` (forged kids cannot make us hammer the IdP), and the
    request waits for it no longer than ``max_wait_seconds``: a slow IdP cannot make a
    refusal slower than the edge's failure floor.
    """

    def __init__(
        self,
        config: IssuerConfig,
        fetcher: SafeFetcher,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
        max_wait_seconds: float = 2.0,
        refresh_fraction: float = 0.75,
        clock: Clock = time.monotonic,
    ) -> None:
        """Configure the cache; no I/O until :meth:`start`.

        Raises:
            ConfigError: a non-positive TTL or wait, or a refresh fraction outside (0, 1].
        """
        if ttl_seconds <= 0 or max_wait_seconds < 0 or not 0 < refresh_fraction <= 1:
            raise ConfigError("identity: JWKS ttl/wait/refresh fraction out of range")
        self._config = config
        self._fetcher = fetcher
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._max_wait = max_wait_seconds
        self._refresh_after = ttl_seconds * refresh_fraction
        self._clock = clock
        self._jwks_uri = config.jwks_uri
        self._by_kid: dict[str, Key] = {}
        self._all: list[Key] = []
        self._fetched_at: float | None = None
        self._demanded_at: float | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._background: asyncio.Task[None] | None = None

    @property
    def fetched_at(self) -> float | None:
        """When the key set in use was fetched (``clock`` time), or None."""
        return self._fetched_at

    async def start(self) -> None:
        """Check the URLs, try a first fetch and start the background refresh.

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
        task = self._refetch(reason="start", on_demand=False)
        if task is not None:
            await asyncio.wait([task])
        self._background = asyncio.create_task(
            self._keep_fresh(), name=f"jwks-refresh {self._config.issuer}"
        )

    async def aclose(self) -> None:
        """Stop the background refresh and any refetch in flight."""
        for task in (self._background, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._background = self._inflight = None

    async def key_for(self, kid: str | None, alg: str) -> Key:
        """The key that must have signed a token with this ``kid`` and ``alg``.

        Raises:
            AuthenticationFailed: no such key (after a permitted, bounded refetch), an
                ambiguous key-less lookup, or the keys cannot be fetched.
        """
        if kid is not None and (not kid or len(kid) > MAX_KID_LENGTH):
            raise AuthenticationFailed("jwt: kid empty or too long")
        key = self._lookup(kid, alg)
        if key is None:
            task = self._refetch(
                reason="unknown kid" if self._fetched_at else "no keys", on_demand=True
            )
            if task is not None and self._max_wait > 0:
                # Shielded: a request giving up does not cancel the refetch for others.
                await asyncio.wait([task], timeout=self._max_wait)
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

    def _refetch(self, *, reason: str, on_demand: bool) -> asyncio.Task[None] | None:
        """The refetch in flight, or a new one; None when a request (``on_demand``)
        asks again within ``min_refetch_seconds`` of the last request-made refetch."""
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        if on_demand:
            now = self._clock()
            if self._demanded_at is not None and now - self._demanded_at < self._min_refetch:
                return None
            self._demanded_at = now
        self._inflight = asyncio.create_task(
            self._refresh_logged(reason), name=f"jwks-fetch {self._config.issuer}"
        )
        return self._inflight

    async def _keep_fresh(self) -> None:
        """Refetch before the TTL runs out; retry failures at the refetch interval."""
        while True:
            if self._fetched_at is None:
                delay = self._min_refetch
            else:
                delay = self._fetched_at + self._refresh_after - self._clock()
            await asyncio.sleep(max(delay, 0.0, min(self._min_refetch, self._refresh_after)))
            task = self._refetch(reason="ttl", on_demand=False)
            if task is not None:
                await asyncio.wait([task])

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

    async def _refresh_logged(self, reason: str) -> None:
        try:
            await self._refresh()
        except FetchRefused as exc:
            log.warning("JWKS refresh (%s) for %s failed: %s", reason, self._config.issuer, exc)
        except Exception:  # a background task must not die silently
            log.exception("JWKS refresh (%s) for %s crashed", reason, self._config.issuer)

    async def _refresh(self) -> None:
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
