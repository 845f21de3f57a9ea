"""The egress proxy: the only way out of a sandbox's network namespace.

One proxy per sandboxed upstream, on a unix socket bound into its sandbox (reached
through the in-sandbox forwarder, ``upstream/_forwarder.py``). It speaks HTTP forward
proxy: ``CONNECT host:port`` for TLS (and any TCP), absolute-form requests for plain
http. A request is allowed only to a ``host:port`` on the upstream's allow-list; the
proxy resolves the name itself and connects only to an address that
:func:`wardgate.net.address.address_allowed` accepts (or that the operator allowed
exactly), so the decision is on the address actually connected to: DNS rebinding,
numeric spellings and redirects to a forbidden place all end at a refused address.
Plain-http requests are one per connection (``Connection: close``), so a kept-alive
connection cannot carry a second request to another host. Every refusal is an
:class:`EgressRefused` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from wardgate.net.address import IPAddress, address_allowed, metadata_name
from wardgate.telemetry.events import GatewayEvent

__all__ = ["EgressProxy", "EgressRefused", "EgressRules"]

log = logging.getLogger("wardgate.egress")
_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 10.0
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


@dataclass(slots=True)
class EgressRefused(GatewayEvent):
    """A sandboxed server's connection the egress proxy refused."""

    kind: ClassVar[str] = "egress.refused"
    upstream: str
    host: str
    port: int
    #: The refused address(es) the name resolved to; empty when refused by name.
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class EgressRules:
    """Where one upstream may go: exact ``host:port`` pairs, exact address exceptions."""

    allow: frozenset[tuple[str, int]]
    exceptions: frozenset[IPAddress] = frozenset()
    # Never loopback or private, except the exact ``exceptions``.
    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def parse(cls, pairs: tuple[str, ...], addresses: tuple[str, ...] = ()) -> EgressRules:
        """From config strings (``host:port``, checked by the config already)."""
        allow = set()
        for pair in pairs:
            host, _, port = pair.rpartition(":")
            allow.add((host.strip("[]").lower().rstrip("."), int(port)))
        return cls(frozenset(allow), frozenset(ipaddress.ip_address(a) for a in addresses))


class _Refused(Exception):
    def __init__(self, reason: str, address: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.address = address


class EgressProxy:
    """The egress proxy of upstream ``upstream``, on unix socket ``path``."""

    def __init__(
        self,
        upstream: str,
        rules: EgressRules,
        path: str | Path,
        emit: Callable[[GatewayEvent], None] | None = None,
    ) -> None:
        self.upstream = upstream
        self.rules = rules
        self.path = str(path)
        self._emit = emit
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (idempotent): mode 0600 in a 0700 directory."""
        if self._server is not None:
            return
        self._unlink(mkdir=True)
        self._server = await asyncio.start_unix_server(self._handle, self.path)
        # Only the gateway's uid: bubblewrap maps the sandbox's uid onto it.
        os.chmod(self.path, 0o600)  # noqa: PTH101 - a plain syscall, no I/O to wait for

    async def aclose(self) -> None:
        """Stop listening and drop open tunnels."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        self._unlink()

    def _unlink(self, *, mkdir: bool = False) -> None:
        path = Path(self.path)
        if mkdir:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        host, port = "", 0
        try:
            async with asyncio.timeout(_HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _HEAD_LIMIT:
                raise _Refused("head-too-large")
            method, host, port, rest = _parse_head(head)
            ip = await self._decide(host, port)
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(str(ip), port)
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _splice(reader, writer, up_reader, up_writer)
            else:
                up_writer.write(rest)
                await _forward_body(reader, up_writer, head)
                await _pipe(up_reader, writer)
                up_writer.close()
        except _Refused as refused:
            self._refuse(writer, host, port, refused)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            with contextlib.suppress(OSError):
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _decide(self, host: str, port: int) -> IPAddress:
        rules = self.rules
        if (host, port) not in rules.allow:
            raise _Refused("not-on-allow-list")
        if metadata_name(host):
            raise _Refused("metadata-name")
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
            addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
        for ip in addresses:
            if address_allowed(ip, rules, rules.exceptions):
                return ip
        raise _Refused("address-refused", ", ".join(sorted({str(a) for a in addresses})))

    def _refuse(
        self, writer: asyncio.StreamWriter, host: str, port: int, refused: _Refused
    ) -> None:
        log.warning(
            "egress refused: upstream %s to %s:%s (%s) %s",
            self.upstream,
            host,
            port,
            refused.address or "-",
            refused.reason,
        )
        if self._emit is not None:
            self._emit(
                EgressRefused(
                    decision_id=None,
                    route=None,
                    upstream=self.upstream,
                    host=host,
                    port=port,
                    address=refused.address,
                    reason=refused.reason,
                )
            )
        with contextlib.suppress(OSError):
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )


def _parse_head(head: bytes) -> tuple[str, str, int, bytes]:
    """(method, host, port, head to send upstream) of a proxy request.

    Raises:
        _Refused: not a request this proxy serves.
    """
    try:
        text = head.decode("latin-1")
        line, _, headers = text.partition("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise _Refused("bad-request") from None
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit():
            raise _Refused("bad-request")
        return method, host.strip("[]").lower().rstrip("."), int(port), b""
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise _Refused("bad-request")
    try:
        port_ = parts.port or 80
    except ValueError:
        raise _Refused("bad-request") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    kept = [
        h
        for h in headers.split("\r\n")
        if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS
    ]
    if any(h.lower().startswith("transfer-encoding:") for h in kept):
        raise _Refused("chunked-request-body")
    upstream_head = f"{method} {path} {version}\r\n" + "".join(
        f"{h}\r\n" for h in [*kept, "Connection: close"]
    )
    return (
        method,
        parts.hostname.lower().rstrip("."),
        port_,
        (upstream_head + "\r\n").encode("latin-1"),
    )


async def _forward_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
) -> None:
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length:
        writer.write(await reader.readexactly(length))
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        up_writer.close()
