"""Raw TCP egress (a database driver's connection): where each listed pair listens inside
the sandbox, and the ``/etc`` files that send the driver there.

A driver does not speak HTTP proxy, so each ``egress_tcp`` pair gets a listener of the
in-sandbox forwarder (``_forwarder.py``) on a loopback address of the sandbox's own
network namespace. Every distinct host name gets its own address (127.0.0.2, .3, …),
which the sandbox's ``/etc/hosts`` (written here, bound read-only) maps the name to; an
IPv4 loopback literal listens on itself; any other IP literal gets an address too,
which the server learns from ``WARDGATE_EGRESS_TCP``. The forwarder relays each
connection to the gateway's egress proxy as a ``CONNECT host:port``, so the proxy
judges it exactly as it judges CONNECT: the pair on the allow-list, the name resolved
by the proxy, the address connected to under the one address policy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FORWARDER_PORT", "TcpForward", "plan_tcp_forwards", "write_etc"]

#: Where the forwarder's HTTP proxy listens (127.0.0.1); no TCP pair may take it.
FORWARDER_PORT = 3128
_FIRST_UNPRIVILEGED = 1024
_FIRST_ALIAS = int(ipaddress.IPv4Address("127.0.0.2"))


@dataclass(frozen=True, slots=True)
class TcpForward:
    """One listed pair: the forwarder listens on ``listen:port`` and asks the proxy
    for ``host:port``."""

    host: str
    port: int
    listen: str

    @property
    def spec(self) -> str:
        """The forwarder's ``--tcp`` argument: ``LISTEN:PORT=HOST:PORT``."""
        return f"{self.listen}:{self.port}={self.host}:{self.port}"


def _loopback_v4(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return isinstance(ip, ipaddress.IPv4Address) and ip.is_loopback


def plan_tcp_forwards(pairs: tuple[str, ...]) -> tuple[TcpForward, ...]:
    """Listener addresses of ``pairs`` (``host:port``, normalised by the config).

    Aliases are handed out in the order hosts first appear, skipping addresses that a
    loopback literal of the list takes, so the plan is the same at every start.

    Raises:
        ValueError: a pair would take the forwarder's own ``127.0.0.1:3128``, or has a
            port below 1024 (the forwarder runs as the server's unprivileged uid and
            cannot listen there; HTTP and TLS on 80/443 go through ``egress``).
    """
    parsed: list[tuple[str, int]] = []
    for pair in pairs:
        head, _, tail = pair.rpartition(":")
        parsed.append((head.strip("[]"), int(tail)))
    for name, number in parsed:
        if number < _FIRST_UNPRIVILEGED:
            raise ValueError(
                f"{name}:{number}: raw TCP egress needs a port of 1024 or above "
                "(HTTP and TLS on low ports go through 'egress')"
            )
    taken = {h for h, _ in parsed if _loopback_v4(h)}
    aliases: dict[str, str] = {}
    next_alias = _FIRST_ALIAS
    forwards = []
    for host, port in parsed:
        if _loopback_v4(host):
            listen = str(ipaddress.IPv4Address(host))
            if listen == "127.0.0.1" and port == FORWARDER_PORT:
                raise ValueError(f"{host}:{port} is the forwarder's own proxy port")
        elif host in aliases:
            listen = aliases[host]
        else:
            while str(ipaddress.IPv4Address(next_alias)) in taken:
                next_alias += 1
            listen = aliases[host] = str(ipaddress.IPv4Address(next_alias))
            next_alias += 1
        forwards.append(TcpForward(host, port, listen))
    return tuple(forwards)


def _hosts(forwards: tuple[TcpForward, ...]) -> str:
    names: dict[str, str] = {}
    for forward in forwards:
        try:
            ipaddress.ip_address(forward.host)
        except ValueError:
            names[forward.host] = forward.listen
    lines = [f"{address}\t{name}" for name, address in names.items()]
    if "localhost" not in names:  # a listed localhost maps only to its forwarder
        lines.insert(0, "127.0.0.1\tlocalhost")
    return "\n".join(lines) + "\n"


def write_etc(directory: Path, forwards: tuple[TcpForward, ...]) -> dict[str, str]:
    """Write the sandbox's ``/etc/hosts`` and ``/etc/nsswitch.conf`` (names from the
    hosts file only: the sandbox has no DNS) under ``directory``; returns sandbox
    path -> host path, for the runner to bind read-only. Nothing without ``forwards``."""
    if not forwards:
        return {}
    etc = directory / "etc"
    etc.mkdir(mode=0o755)
    files = {"hosts": _hosts(forwards), "nsswitch.conf": "hosts: files\n"}
    binds = {}
    for name, text in files.items():
        path = etc / name
        path.write_text(text)
        path.chmod(0o444)
        binds[f"/etc/{name}"] = str(path)
    return binds
