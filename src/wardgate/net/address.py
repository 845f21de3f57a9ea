"""The one address policy of the gateway: may we connect to this IP, this host name?

Both the gateway's own outbound fetcher (:mod:`wardgate.net.fetch`) and the egress proxy
of sandboxed servers (:mod:`wardgate.net.egress`) decide with :func:`address_allowed`,
on the address actually connected to (after resolution): IPv4-in-IPv6 forms are
unwrapped first, so a mapped, NAT64, 6to4 or Teredo spelling of 127.0.0.1 or
169.254.169.254 is judged as that IPv4 address.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

__all__ = [
    "METADATA_NAMES",
    "AddressRules",
    "IPAddress",
    "address_allowed",
    "metadata_name",
    "unwrap",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

#: Cloud metadata service names; refused by name whatever they resolve to.
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.packet.net",
        "metadata.platformequinix.com",
        "metadata.tencentyun.com",
    }
)


class AddressRules(Protocol):
    """What a policy says about non-public addresses (``FetchPolicy``, egress rules)."""

    @property
    def allow_loopback(self) -> bool: ...

    @property
    def allow_private(self) -> bool: ...


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 spelling carries (mapped, NAT64, 6to4, Teredo), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def address_allowed(
    ip: IPAddress, rules: AddressRules, exceptions: frozenset[IPAddress] = frozenset()
) -> bool:
    """Whether ``rules`` let us connect to ``ip``.

    Refused unless ``rules`` say otherwise: loopback, private (RFC 1918, unique-local),
    and always link-local (169.254.0.0/16, the metadata address), multicast,
    unspecified, reserved and every other non-global range. ``exceptions`` are exact
    addresses the operator allowed (compared after unwrapping).
    """
    ip = unwrap(ip)
    if ip in exceptions:
        return True
    if ip.is_loopback:
        return rules.allow_loopback
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return False
    if ip.is_global:
        return True
    return rules.allow_private and ip.is_private


def metadata_name(host: str) -> bool:
    """Whether ``host`` names a cloud metadata service (trailing dot and case ignored)."""
    return host.rstrip(".").lower() in METADATA_NAMES
