"""An SSRF-aware GET (issuer metadata, JWKS) and form POST (token introspection).

The decision rests on the address actually connected to: the resolver drops every
address the policy refuses, and the socket factory, which sees the exact address of
each connect, refuses again (so no DNS answer can change between check and connect).
No redirects, no proxies from the environment, bounded time and size.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult

from wardgate.net.address import IPAddress, address_allowed
from wardgate.net.address import unwrap as _unwrap

__all__ = ["FetchPolicy", "FetchRefused", "SafeFetcher", "address_allowed", "loads_strict"]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits for fetching issuer documents.

    ``allow_loopback`` exists for tests and sidecar IdPs: it permits loopback
    addresses and plain ``http`` to a loopback IP literal (``http://127.0.0.1:…``).
    ``allow_private`` permits RFC 1918 / ULA addresses (an IdP inside the VPC).
    """

    timeout_seconds: float = 5.0
    max_bytes: int = 512 * 1024
    allow_loopback: bool = False
    allow_private: bool = False


class FetchRefused(Exception):
    """The fetch was refused or failed; the message is for the log."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError(f"JSON number {text[:20]} overflows")
    return value


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("JSON object repeats a member")
    return result


def loads_strict(data: str | bytes) -> Any:
    """``json.loads`` for security documents (JOSE, JWKS, introspection answers).

    Python's ``json`` accepts ``NaN``, ``Infinity`` and numbers that overflow to
    infinity; none is JSON (RFC 8259 §6), and an infinite ``exp`` never expires. A
    repeated member is refused too (RFC 7515 §5.2: no second reading of one object).

    Raises:
        ValueError: not strict JSON.
    """
    return json.loads(
        data,
        parse_constant=_no_constant,
        parse_float=_finite_float,
        object_pairs_hook=_unique_members,
    )


class _PolicyResolver(AbstractResolver):
    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        policy = self._policy
        kept = [a for a in answers if address_allowed(ipaddress.ip_address(a["host"]), policy)]
        if not kept:
            seen = ", ".join(sorted({a["host"] for a in answers}))
            raise OSError(errno.EACCES, f"{host!r} resolves only to refused addresses ({seen})")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class SafeFetcher:
    """Fetches small JSON documents under a :class:`FetchPolicy`."""

    def __init__(self, policy: FetchPolicy, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._policy = policy
        self._ssl: ssl.SSLContext = ssl_context or ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    @property
    def policy(self) -> FetchPolicy:
        return self._policy

    async def start(self) -> None:
        """Open the connection pool (idempotent)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_PolicyResolver(self._policy),
                socket_factory=self._socket_for,
                ssl=self._ssl,
                limit=8,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def aclose(self) -> None:
        """Close the pool; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def check_url(self, url: str) -> None:
        """Refuse what can be refused without the network.

        Raises:
            FetchRefused: wrong scheme, credentials in the URL, or a refused IP literal.
        """
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as exc:
            raise FetchRefused(f"unparsable URL: {exc}") from exc
        if parts.scheme not in ("https", "http"):
            raise FetchRefused(f"scheme {parts.scheme!r} refused")
        if parts.username is not None or parts.password is not None:
            raise FetchRefused("credentials in URL refused")
        if not parts.hostname:
            raise FetchRefused("URL has no host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None  # a name: decided on the addresses it resolves to
        if literal is not None and not address_allowed(literal, self._policy):
            raise FetchRefused(f"address {literal} refused")
        if parts.scheme == "http" and not (
            self._policy.allow_loopback and literal is not None and _unwrap(literal).is_loopback
        ):
            raise FetchRefused("plain http refused (https only, except loopback when allowed)")

    def _socket_for(self, addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not address_allowed(ip, self._policy):
            raise OSError(errno.EACCES, f"connect to refused address {ip}")
        return socket.socket(family=family, type=type_, proto=proto)

    async def get_json(self, url: str) -> dict[str, Any]:
        """GET ``url`` and parse a JSON object from it.

        Raises:
            FetchRefused: refused by policy, network or HTTP failure, too large,
                too slow, or not a JSON object.
        """
        return await self._json("GET", url, headers={"Accept": "application/json"})

    async def post_form_json(
        self, url: str, form: Mapping[str, str], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """POST ``form`` as ``application/x-www-form-urlencoded`` and parse a JSON object.

        Same policy as :meth:`get_json`. ``headers`` (e.g. client authentication) are
        sent as given and never appear in an error message.

        Raises:
            FetchRefused: refused by policy, network or HTTP failure, too large,
                too slow, or not a JSON object.
        """
        sent = {"Accept": "application/json", **(headers or {})}
        return await self._json("POST", url, headers=sent, data=dict(form))

    async def post_json(
        self, url: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> int:
        """POST ``body`` as JSON under the same policy; any 2xx is success (a webhook or
        an event API answers 202 with a body nobody needs). Returns the status.

        Raises:
            FetchRefused: refused by policy, network failure, timeout, or a non-2xx answer.
        """
        sent = {"Content-Type": "application/json", **(headers or {})}
        return await self.post_bytes(url, json.dumps(body).encode(), headers=sent)

    async def post_bytes(
        self, url: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> int:
        """POST ``data`` as given (NDJSON, a JSON array, …) under the same policy; any 2xx
        is success. Returns the status.

        Raises:
            FetchRefused: refused by policy, network failure, timeout, or a non-2xx answer.
        """
        self.check_url(url)
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self._policy.timeout_seconds)
        try:
            async with self._session.post(
                url,
                allow_redirects=False,
                timeout=timeout,
                headers=dict(headers or {}),
                data=data,
            ) as resp:
                await resp.content.read(self._policy.max_bytes)
                if not 200 <= resp.status < 300:
                    raise FetchRefused(f"HTTP {resp.status} from {url}")
                return resp.status
        except FetchRefused:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise FetchRefused(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc

    async def _json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        self.check_url(url)
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self._policy.timeout_seconds)
        try:
            async with self._session.request(
                method,
                url,
                allow_redirects=False,
                timeout=timeout,
                headers=dict(headers),
                data=data,
            ) as resp:
                if resp.status != 200:
                    raise FetchRefused(f"HTTP {resp.status} from {url}")
                if (resp.content_length or 0) > self._policy.max_bytes:
                    raise FetchRefused(f"response larger than {self._policy.max_bytes} bytes")
                body = await resp.content.read(self._policy.max_bytes + 1)
                if len(body) > self._policy.max_bytes:
                    raise FetchRefused(f"response larger than {self._policy.max_bytes} bytes")
        except FetchRefused:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise FetchRefused(f"fetch {url} failed: {type(exc).__name__}: {exc}") from exc
        try:
            doc = loads_strict(body)
        except (ValueError, RecursionError) as exc:
            raise FetchRefused(f"{url} did not return JSON") from exc
        if not isinstance(doc, dict):
            raise FetchRefused(f"{url} did not return a JSON object")
        return doc
