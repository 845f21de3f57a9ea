"""What the listener counts and how far it lets clients go: :class:`ListenerLimits`
(from ``[server]``) and the :class:`ConnectionTable` that admits, displaces and refuses
connections (see :mod:`wardgate.edge.listener`)."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wardgate.config.model import ServerConfig

__all__ = [
    "BAD_REQUEST",
    "BODY_TIMEOUT",
    "DISPLACED",
    "HEAD_TIMEOUT",
    "HEAD_TOO_LARGE",
    "REFUSED_BUSY",
    "REFUSED_PER_IP",
    "Connection",
    "ConnectionTable",
    "ListenerLimits",
    "client_key",
]

log = logging.getLogger("wardgate.listener")

#: Bound events are logged at most this often (an attack must not flood the log).
_LOG_EVERY = 1.0

REFUSED_PER_IP = "refused (per-address cap)"
REFUSED_BUSY = "refused (cap, all busy)"
DISPLACED = "displaced a waiting connection"
HEAD_TIMEOUT = "head too slow"
BODY_TIMEOUT = "body too slow"
HEAD_TOO_LARGE = "head too large"
BAD_REQUEST = "unparsable request"


class Connection(Protocol):
    """What the table needs of a connection."""

    @property
    def waiting(self) -> bool:
        """No request in flight: it may be displaced."""
        ...

    def drop(self) -> None:
        """Close it now (and release it from the table)."""
        ...


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """The listener bounds, in seconds and bytes (see :mod:`wardgate.edge.listener`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_connections: int = 1000
    max_connections_per_ip: int | None = None
    max_requests_per_connection: int = 1000

    @classmethod
    def from_config(cls, server: ServerConfig) -> ListenerLimits:
        return cls(
            header_timeout=server.header_timeout_seconds,
            body_timeout=server.body_timeout_seconds,
            max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
            max_connections=server.max_connections,
            max_connections_per_ip=server.max_connections_per_ip,
            max_requests_per_connection=server.max_requests_per_connection,
        )


def client_key(address: str) -> str:
    """What ``max_connections_per_ip`` counts by: the IPv4 address, or the IPv6 /64 (one
    host usually holds a whole /64, so single IPv6 addresses cost an attacker nothing)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address) + "/64"


class ConnectionTable:
    """The open connections of one listener, oldest first, with per-address counts."""

    def __init__(self, limits: ListenerLimits) -> None:
        self.limits = limits
        # Insertion order is the eviction order: a connection moves to the end each
        # time it finishes a response, so the front holds the longest waiting.
        self._open: dict[Connection, str] = {}
        self._per_ip: Counter[str] = Counter()
        #: How often each bound acted, by event name (also in the rate-limited log).
        self.counts: Counter[str] = Counter()
        self._last_log = 0.0

    def __len__(self) -> int:
        return len(self._open)

    def connections(self) -> list[Connection]:
        return list(self._open)

    def admit(self, conn: Connection, ip: str) -> bool:
        """Count ``conn`` in, displacing a waiting connection at the cap; False: refuse."""
        per_ip = self.limits.max_connections_per_ip
        if per_ip is not None and self._per_ip[ip] >= per_ip:
            self.note(REFUSED_PER_IP, ip)
            return False
        if len(self._open) >= self.limits.max_connections:
            victim = next((c for c in self._open if c.waiting), None)
            if victim is None:
                self.note(REFUSED_BUSY, ip)
                return False
            self.note(DISPLACED, self._open[victim])
            victim.drop()
        self._open[conn] = ip
        self._per_ip[ip] += 1
        return True

    def touch(self, conn: Connection) -> None:
        """``conn`` finished a response: it becomes the newest waiting connection."""
        ip = self._open.pop(conn, None)
        if ip is not None:
            self._open[conn] = ip

    def release(self, conn: Connection) -> None:
        ip = self._open.pop(conn, None)
        if ip is not None:
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]

    @property
    def refused(self) -> int:
        return self.counts[REFUSED_PER_IP] + self.counts[REFUSED_BUSY]

    @property
    def evicted(self) -> int:
        return self.counts[DISPLACED]

    def note(self, event: str, ip: str) -> None:
        """Count a bound that acted; log a summary at most once a second, since each
        attacking socket would otherwise write a line."""
        self.counts[event] += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            self._last_log = now
            log.warning(
                "listener bound enforced: %s (last from %s); so far: %s",
                event,
                ip,
                ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())),
            )
