"""Authentication at the edge: every request proves who it is before anything else.

Every failure, whatever its cause (no token, bad signature, expired, wrong audience,
replayed proof, unknown certificate), gets the same status, headers and body, no sooner
than a fixed floor: a prober learns nothing. The reason goes to the log with the
decision id. Protected Resource Metadata (RFC 9728) is served at both well-known paths.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509

from wardgate.config.identity import AuthConfig
from wardgate.edge.asgi import Scope, Send, send_json
from wardgate.errors import AuthenticationFailed, ConfigError, WardgateError
from wardgate.guards.scopes import InsufficientScope, StepUpRequired
from wardgate.identity import (
    Authenticator,
    AuthRequest,
    DpopConfig,
    DpopVerifier,
    FetchPolicy,
    IntrospectionVerifier,
    JwtVerifier,
    SpiffeVerifier,
)
from wardgate.identity.principal import Principal
from wardgate.state import MemoryStateStore, RedisStateStore, StateStore
from wardgate.telemetry.events import AuthFailed, GatewayEvent
from wardgate.tls import peer_certificate_der
from wardgate.wire.jsonrpc import error_response

__all__ = ["MAX_SPINNING", "PRM_PATH", "EdgeAuth", "is_metadata_path", "sleep_until_ns", "spinning"]

log = logging.getLogger("wardgate.auth")

PRM_PATH = "/.well-known/oauth-protected-resource"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: The last stretch before a refusal's deadline is waited by yielding, not by a timer:
#: the event loop's timers wake up to a millisecond late (epoll's resolution).
_SPIN_NS = 1_500_000
#: At most this many refusals yield-wait at once; beyond it the timer alone is used
#: (about 1 ms coarser, the same for every cause), so a flood of bad tokens cannot turn
#: the precise wait into a busy loop.
MAX_SPINNING = 8
_spinning = 0
#: Share of the failure floor a request may wait for a JWKS refetch (unknown ``kid``).
_JWKS_WAIT_SHARE = 0.6


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def is_metadata_path(path: str) -> bool:
    """Whether ``path`` is the PRM document or anything under it (RFC 9728 §3.1)."""
    return path == PRM_PATH or path.startswith(PRM_PATH + "/")


async def sleep_until_ns(deadline_ns: int) -> None:
    """Sleep until ``time.perf_counter_ns()`` reaches ``deadline_ns``, to well under 1 ms.

    A timer covers all but the last :data:`_SPIN_NS`; the rest is spent yielding to
    the event loop (other tasks keep running), so the wake-up is not a timer tick late.
    No more than :data:`MAX_SPINNING` callers yield-wait at once.
    """
    global _spinning
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > _SPIN_NS:
        await asyncio.sleep((remaining - _SPIN_NS) / 1e9)
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining <= 0:
        return
    if _spinning >= MAX_SPINNING:
        while time.perf_counter_ns() < deadline_ns:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep((deadline_ns - time.perf_counter_ns()) / 1e9)
        return
    _spinning += 1
    try:
        while time.perf_counter_ns() < deadline_ns:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep(0)
    finally:
        _spinning -= 1


def spinning() -> int:
    """How many refusals are yield-waiting now (for tests and metrics)."""
    return _spinning


def _load_bundle(domain: str, path: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"auth.spiffe.trust_bundles.{domain}: {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(
            f"auth.spiffe.trust_bundles.{domain}: {path}: not PEM certificates"
        ) from None
    return certs


class EdgeAuth:
    """Turns a request into a :class:`Principal`, or refuses it uniformly."""

    def __init__(
        self,
        config: AuthConfig,
        route_status: Mapping[str, int] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        emit: Callable[[GatewayEvent], None] | None = None,
    ) -> None:
        """Build every verifier from ``config``; no I/O until :meth:`start`.

        ``environ`` (default ``os.environ``) holds the secrets the config names;
        ``emit`` takes an ``auth.failed`` event for every refusal (the audit trail's).

        Raises:
            ConfigError: an inconsistent config or a named secret that is not set.
        """
        self._emit = emit
        self.config = config
        self._route_status = dict(route_status or {})
        self._store: StateStore = (
            RedisStateStore(config.redis_url, key_prefix=config.redis_key_prefix)
            if config.replay_store == "redis"
            else MemoryStateStore()
        )
        issuers = [entry.issuer_config(config.resource) for entry in config.issuers]
        self._floor_ns = round(config.failure_floor_ms * 1_000_000)
        # An unknown kid may wait for a refetch only within the floor: a slow IdP must
        # not show in the refusal's timing. (No floor, no timing promise: wait 2 s.)
        jwks_wait = config.failure_floor_ms / 1000 * _JWKS_WAIT_SHARE or 2.0
        self._jwt = (
            JwtVerifier(
                issuers,
                fetch_policy=FetchPolicy(allow_loopback=config.allow_loopback_jwks),
                max_clock_skew=config.max_clock_skew_seconds,
                jwks_max_wait_seconds=jwks_wait,
            )
            if issuers
            else None
        )
        self._introspection = (
            IntrospectionVerifier(
                config.introspection.introspection_config(
                    config.resource, os.environ if environ is None else environ
                ),
                allow_loopback=config.allow_loopback_jwks,
                max_clock_skew=config.max_clock_skew_seconds,
            )
            if config.introspection is not None
            else None
        )
        dpop = (
            DpopVerifier(
                self._store, config=DpopConfig(max_age_seconds=config.dpop_max_age_seconds)
            )
            if config.dpop
            else None
        )
        spiffe = None
        if config.spiffe is not None:
            bundles = {d: _load_bundle(d, p) for d, p in config.spiffe.trust_bundles.items()}
            spiffe = SpiffeVerifier(bundles)
        self.authenticator = Authenticator(
            jwt=self._jwt,
            dpop=dpop,
            spiffe=spiffe,
            require_bound_tokens=config.require_bound_tokens,
            spiffe_tenants=config.spiffe.tenants if config.spiffe else None,
            introspection=self._introspection,
        )

    async def start(self) -> None:
        await self._store.start()
        if self._jwt is not None:
            await self._jwt.start()
        if self._introspection is not None:
            await self._introspection.start()

    async def aclose(self) -> None:
        if self._introspection is not None:
            await self._introspection.aclose()
        if self._jwt is not None:
            await self._jwt.aclose()
        await self._store.aclose()

    # -- URLs ---------------------------------------------------------------------

    def base_url(self, scope: Scope, headers: Mapping[str, str]) -> str:
        """The gateway's external base URL: ``public_url``, else the listener's address.

        Never the ``Host`` header: a client chooses that, and a DPoP proof or a
        metadata URL must not follow it. (``headers`` is kept for callers' sake.)
        """
        del headers
        if self.config.public_url:
            return self.config.public_url
        server = scope.get("server")
        if not server or server[1] is None:
            return "http://invalid.invalid"  # a unix socket: nothing will match it
        host, port = server
        host = f"[{host}]" if ":" in host else host
        return f"{scope.get('scheme', 'http')}://{host}:{port}"

    def _request_urls(self, scope: Scope) -> tuple[str, tuple[str, ...]]:
        """The URL a DPoP proof must name, and the other spellings also accepted.

        With ``public_url``, exactly that. Without one the listener is on loopback
        (the config refuses anything else with DPoP on), and a loopback client may
        name the listener by any loopback name; the port and scheme are the socket's.
        """
        path = scope["path"]
        base = self.base_url(scope, {})
        if self.config.public_url:
            return base + path, ()
        server = scope.get("server")
        if not server or server[1] is None or not _is_loopback(server[0]):
            return base + path, ()
        scheme = scope.get("scheme", "http")
        others = tuple(f"{scheme}://{name}:{server[1]}{path}" for name in _LOOPBACK_NAMES)
        return base + path, others

    def metadata_url(self, route: str | None, scope: Scope, headers: Mapping[str, str]) -> str:
        suffix = f"/mcp/{route}" if route else ""
        return f"{self.base_url(scope, headers)}{PRM_PATH}{suffix}"

    @property
    def metadata_exposure(self) -> str:
        """``full``, ``minimal`` or ``off``; by default ``full`` only where some route
        answers 401 (whose clients need discovery), else ``off``."""
        if self.config.metadata_exposure is not None:
            return self.config.metadata_exposure
        statuses = {self.config.failure_status, *self._route_status.values()}
        return "full" if 401 in statuses else "off"

    def metadata(self) -> dict[str, Any]:
        """The Protected Resource Metadata document (the same for every route); with
        exposure ``off`` the edge never serves it."""
        servers = [i.issuer for i in self.config.issuers]
        if self.config.introspection is not None:
            servers.append(self.config.introspection.issuer)
        doc: dict[str, Any] = {
            "resource": self.config.resource,
            "authorization_servers": list(self.config.authorization_servers)
            or list(dict.fromkeys(servers)),
        }
        if self.metadata_exposure == "minimal":
            return doc
        doc["bearer_methods_supported"] = ["header"]
        if self.config.scopes_supported:
            doc["scopes_supported"] = list(self.config.scopes_supported)
        if self.config.dpop:
            doc["dpop_signing_alg_values_supported"] = sorted(DpopConfig().algorithms)
        if self.config.spiffe is not None:
            doc["tls_client_certificate_bound_access_tokens"] = True
        return doc

    # -- authentication -------------------------------------------------------------

    async def authenticate(self, scope: Scope, headers: Mapping[str, str]) -> Principal:
        """Raises: AuthenticationFailed: for every reason alike (the detail says which)."""
        url, alternate_urls = self._request_urls(scope)
        request = AuthRequest(
            method=scope["method"],
            url=url,
            alternate_urls=alternate_urls,
            authorization=headers.get("authorization"),
            dpop=headers.get("dpop"),
            peer_certificate=peer_certificate_der(scope),
        )
        try:
            return await self.authenticator.authenticate(request)
        except AuthenticationFailed:
            raise
        except WardgateError as exc:  # e.g. the replay store is down: fail closed
            raise AuthenticationFailed(f"authentication unavailable: {exc.detail}") from exc

    def status_for(self, route: str | None) -> int:
        if route is not None and route in self._route_status:
            return self._route_status[route]
        return self.config.failure_status

    def _challenge_metadata_url(self, scope: Scope) -> str:
        """The metadata URL for the path the client asked for (RFC 9728 §3.1: the
        well-known segment inserted before the path), whether a route is there or not:
        every such URL answers the same document, so the challenge names no route the
        client did not name itself."""
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        path = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        # Keep it a plain token inside the quoted header parameter.
        path = quote(path.rstrip("/"), safe="/-._~!$&'()*+,;=:@%")
        return f"{self.base_url(scope, {})}{PRM_PATH}{path}"

    def _bearer_challenge(self, route: str | None, scope: Scope, headers: Mapping[str, str]) -> str:
        del route, headers  # the challenge follows the request path, never a route table
        parts = [f'resource_metadata="{self._challenge_metadata_url(scope)}"']
        if self.config.scopes_supported:
            parts.append(f'scope="{" ".join(self.config.scopes_supported)}"')
        return "Bearer " + ", ".join(parts)

    async def refuse(
        self,
        send: Send,
        route: str | None,
        scope: Scope,
        headers: Mapping[str, str],
        decision_id: str,
        arrived_ns: int,
        failure: AuthenticationFailed,
    ) -> None:
        """The one answer every authentication failure gets, never sooner than the
        floor after the request's arrival (``time.perf_counter_ns()`` taken first
        thing by the edge), whatever the cause took."""
        log.info(
            "authentication failed: %s",
            failure.detail,
            extra={"decision_id": decision_id, "route": route, "code": failure.code},
        )
        if self._emit is not None:
            client = scope.get("client")
            self._emit(AuthFailed(decision_id, route, failure.code, client[0] if client else None))
        status = self.status_for(route)
        extra: list[tuple[bytes, bytes]] = []
        if status == 401:
            extra.append(
                (b"www-authenticate", self._bearer_challenge(route, scope, headers).encode())
            )
            message = "Unauthorized"
        else:
            message = "Misdirected Request"
        body = error_response(None, -32600, message, {"decisionId": decision_id})
        await sleep_until_ns(arrived_ns + self._floor_ns)
        await send_json(send, status, body, extra)

    def error_headers(
        self, error: WardgateError, route: str, scope: Scope, headers: Mapping[str, str]
    ) -> list[tuple[bytes, bytes]]:
        """``WWW-Authenticate`` for scope and step-up refusals of an authenticated caller."""
        meta = self.metadata_url(route, scope, headers)
        if isinstance(error, InsufficientScope):
            value = (
                f'Bearer error="insufficient_scope", scope="{" ".join(error.scopes)}", '
                f'resource_metadata="{meta}"'
            )
            return [(b"www-authenticate", value.encode())]
        if isinstance(error, StepUpRequired):
            value = f'Bearer error="insufficient_user_authentication", resource_metadata="{meta}"'
            if error.acr_values:
                value += f', acr_values="{" ".join(error.acr_values)}"'
            return [(b"www-authenticate", value.encode())]
        return []
