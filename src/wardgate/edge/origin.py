"""DNS-rebinding defences: the ``Origin`` and ``Host`` headers of every request."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["OriginPolicy"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@lru_cache(maxsize=256)  # bounded: hostile Host values cannot grow it
def _split_host(value: str) -> tuple[str, str | None]:
    parts = urlsplit("//" + value)
    try:
        port = str(parts.port) if parts.port is not None else None
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port


class OriginPolicy:
    """Decide whether an ``Origin`` and a ``Host`` may reach the gateway.

    With no explicit lists, a loopback-bound gateway accepts loopback origins and
    hosts only; a gateway bound elsewhere must be given its allowed origins (any
    ``Origin`` is refused until then) and accepts any ``Host``.
    """

    def __init__(
        self, allowed_origins: Sequence[str], allowed_hosts: Sequence[str], loopback: bool
    ) -> None:
        self._origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self._hosts = tuple(h.lower() for h in allowed_hosts)
        self._loopback = loopback

    def origin_ok(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser: DNS rebinding needs one
        origin = origin.rstrip("/").lower()
        if origin in self._origins:
            return True
        if self._origins or not self._loopback:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in _LOOPBACK_NAMES

    def host_ok(self, host: str | None) -> bool:
        if host is None:
            return not self._hosts and not self._loopback
        name, port = _split_host(host)
        if not self._hosts:
            return not self._loopback or name in _LOOPBACK_NAMES
        for allowed in self._hosts:
            a_name, _, a_port = (
                allowed.partition(":")
                if not allowed.startswith("[")
                else (
                    allowed.split("]")[0].strip("["),
                    "",
                    allowed.split("]:", 1)[1] if "]:" in allowed else "",
                )
            )
            if a_name == name and (a_port in ("", "*") or a_port == port):
                return True
        return False
