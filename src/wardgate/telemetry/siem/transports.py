"""How batches reach a SIEM: HTTP through the SSRF-safe fetcher, syslog over TCP (TLS) or UDP.

Every destination address passes the gateway's outbound address policy
(:class:`~wardgate.net.fetch.FetchPolicy`): loopback and private ranges only when the
config says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher, address_allowed
from wardgate.telemetry.siem.formats import cef, rfc5424, webhook_signature

__all__ = ["Encoder", "HttpTransport", "SyslogTcp", "SyslogUdp", "resolve_allowed"]

Encoder = Callable[[Sequence[Mapping[str, Any]]], bytes]


class HttpTransport:
    """POSTs each batch, encoded by ``encode``; with ``hmac_secret``, signs the body."""

    def __init__(
        self,
        fetcher: SafeFetcher,
        url: str,
        encode: Encoder,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        hmac_secret: bytes | None = None,
    ) -> None:
        fetcher.check_url(url)  # refuse at start-up what the policy refuses anyway
        self._fetcher = fetcher
        self._url = url
        self._encode = encode
        self._headers = {"Content-Type": content_type, **(headers or {})}
        self._secret = hmac_secret

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        body = self._encode(records)
        headers = dict(self._headers)
        if self._secret is not None:
            headers["X-Wardgate-Signature"] = webhook_signature(
                self._secret, body, int(time.time())
            )
        await self._fetcher.post_bytes(self._url, body, headers=headers)

    async def aclose(self) -> None:
        await self._fetcher.aclose()


async def resolve_allowed(host: str, port: int, policy: FetchPolicy) -> str:
    """The first address of ``host`` that the policy allows.

    Raises:
        FetchRefused: no allowed address.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port)
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address_allowed(ip, policy):
            return str(ip)
    raise FetchRefused(f"no allowed address for {host}")


def _frame(record: Mapping[str, Any], fmt: Literal["rfc5424", "cef"], app: str) -> bytes:
    if fmt == "cef":
        # CEF in the MSG part of an RFC 5424 message.
        head = rfc5424({**record, "kind": record.get("kind")}, app=app).split(b" [", 1)[0]
        return head + b" - " + cef(record).encode()
    return rfc5424(record, app=app)


class SyslogTcp:
    """RFC 5424 over TCP (RFC 6587 octet counting), TLS when ``ssl_context`` is given
    (RFC 5425); reconnects after a failure."""

    def __init__(
        self,
        host: str,
        port: int,
        policy: FetchPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        fmt: Literal["rfc5424", "cef"] = "rfc5424",
        app: str = "wardgate",
        timeout: float = 5.0,
    ) -> None:
        self._host, self._port, self._policy = host, port, policy
        self._ssl = ssl_context
        self._fmt, self._app, self._timeout = fmt, app, timeout
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        address = await resolve_allowed(self._host, self._port, self._policy)
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                address,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            ),
            self._timeout,
        )
        return writer

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        try:
            if self._writer is None or self._writer.is_closing():
                self._writer = await self._connect()
            for record in records:
                msg = _frame(record, self._fmt, self._app)
                self._writer.write(str(len(msg)).encode() + b" " + msg)
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except (OSError, TimeoutError, FetchRefused) as exc:
            await self.aclose()
            raise FetchRefused(f"syslog {self._host}:{self._port}: {exc!r}") from exc

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)


class SyslogUdp:
    """RFC 5426: one message per datagram (no delivery signal: UDP cannot spool)."""

    def __init__(
        self,
        host: str,
        port: int,
        policy: FetchPolicy,
        *,
        fmt: Literal["rfc5424", "cef"] = "rfc5424",
        app: str = "wardgate",
        max_datagram: int = 8192,
    ) -> None:
        self._host, self._port, self._policy = host, port, policy
        self._fmt, self._app, self._max = fmt, app, max_datagram
        self._transport: asyncio.DatagramTransport | None = None

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        if self._transport is None:
            address = await resolve_allowed(self._host, self._port, self._policy)
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(address, self._port)
            )
        for record in records:
            self._transport.sendto(_frame(record, self._fmt, self._app)[: self._max])

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
