"""CORS for browser MCP clients: only the origins the operator lists, nothing by default.

A listed origin gets its preflight answered (the MCP request headers allowed) and, on
every answer, ``Access-Control-Allow-Origin`` set to itself (never ``*``, since
credentials are allowed) with the MCP response headers a client must read exposed. Every
answer the policy sees carries ``Vary: Origin``, so a shared cache never serves one
origin's answer to another. Any other origin gets no CORS headers: the browser keeps the
answer from the page. CORS only relaxes the browser's same-origin rule; the ``Origin``
check (:mod:`wardgate.edge.origin`) runs first and still refuses origins it does not
allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from wardgate.edge.asgi import Scope, Send

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "EXPOSED_HEADERS", "CorsPolicy"]

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"

#: Request headers an MCP client sends (``mcp-param-*`` are matched by prefix).
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "dpop",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
)
_PARAM_HEADER = re.compile(r"mcp-param-[a-z0-9!#$%&'*+.^_`|~-]+")
#: Most ``mcp-param-*`` names one preflight may have allowed (a request names a few).
_MAX_PARAM_HEADERS = 32

#: Response headers a browser client must be able to read.
EXPOSED_HEADERS = "mcp-session-id, mcp-protocol-version, www-authenticate"

_MAX_AGE = b"600"


def _norm(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class CorsPolicy:
    """Which browser origins may call cross-origin, and the headers that say so."""

    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(_norm(o) for o in origins)

    def __bool__(self) -> bool:
        return bool(self._origins)

    def allows(self, origin: str | None) -> bool:
        """Whether ``origin`` (the request's ``Origin`` header) is listed."""
        return origin is not None and _norm(origin) in self._origins

    def wrap(self, send: Send, headers: Mapping[str, str]) -> Send:
        """A ``send`` that adds ``Vary: Origin`` and, for a listed origin, the CORS
        headers to the response it starts (``send`` itself when nothing is listed)."""
        if not self._origins:
            return send
        origin = headers.get("origin")
        extra: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        if self.allows(origin):
            assert origin is not None
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
            ]

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        return send_with_cors

    def is_preflight(self, scope: Scope, headers: Mapping[str, str]) -> bool:
        """An ``OPTIONS`` with ``Access-Control-Request-Method`` from a listed origin."""
        return (
            scope["method"] == "OPTIONS"
            and "access-control-request-method" in headers
            and self.allows(headers.get("origin"))
        )

    async def preflight(self, scope: Scope, headers: Mapping[str, str], send: Send) -> bool:
        """Answer a preflight from a listed origin (204); ``False`` when it is not one.

        ``send`` is the one :meth:`wrap` returned, which adds the origin's headers.
        """
        if not self.is_preflight(scope, headers):
            return False
        allowed = list(ALLOWED_HEADERS)
        asked = headers.get("access-control-request-headers", "")
        params = sorted(
            {
                name
                for name in (h.strip().lower() for h in asked.split(","))
                if _PARAM_HEADER.fullmatch(name)
            }
        )
        allowed += params[:_MAX_PARAM_HEADERS]
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                    (b"access-control-allow-headers", ", ".join(allowed).encode("latin-1")),
                    (b"access-control-max-age", _MAX_AGE),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True
