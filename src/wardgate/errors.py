"""Wardgate's error hierarchy.

Every error carries a stable string ``code``, the JSON-RPC error code a client sees,
the HTTP status used on HTTP transports, and the CLI exit code::

    WardgateError                      wardgate.internal        -32603  500  exit 1
    ├── ConfigError                    wardgate.config          -32603  500  exit 2
    ├── ProtocolError                  wardgate.protocol        -32600  400
    │   ├── ParseError                 wardgate.parse           -32700  400
    │   ├── InvalidParams              wardgate.invalid_params  -32602  400
    │   │   └── UnknownTarget          wardgate.unknown_target  -32602  200
    │   ├── MethodNotFound             wardgate.method_not_found -32601 404
    │   ├── HeaderMismatch             wardgate.header_mismatch -32020  400
    │   ├── UnsupportedVersion         wardgate.unsupported_version -32022 400
    │   ├── PayloadTooLarge            wardgate.payload_too_large -32600 413
    │   └── SessionNotFound            wardgate.session_not_found -32600 404
    ├── TooManySessions                wardgate.too_many_sessions -32603 503
    ├── Denied                         wardgate.denied          -32003  200
    │   └── AuthenticationFailed       wardgate.unauthenticated -32003  401
    └── UpstreamError                  wardgate.upstream        -32603  502
        ├── UpstreamTimeout            wardgate.upstream_timeout -32001 504
        └── UpstreamBusy               wardgate.upstream_busy   -32603  503

HTTP status 200 marks an error answered in-band: a well-formed call that a guard
refused, or that names a tool no upstream serves, is a JSON-RPC error in a 200 reply,
so that the official SDK clients (TypeScript and Python) surface it as an ``McpError``
with our code and ``data.decisionId`` rather than as a transport failure. Denials use
-32003: -32000 and -32001 mean "connection closed" and "request timeout" to the SDKs.

Messages sent to clients are generic: the ``public_message`` of the class, plus the
decision id. The ``detail`` goes to the log only.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "Denied",
    "HeaderMismatch",
    "InvalidParams",
    "MethodNotFound",
    "ParseError",
    "PayloadTooLarge",
    "ProtocolError",
    "SessionNotFound",
    "TooManySessions",
    "UnknownTarget",
    "UnsupportedVersion",
    "UpstreamBusy",
    "UpstreamError",
    "UpstreamTimeout",
    "WardgateError",
]


class WardgateError(Exception):
    """Base of every error Wardgate raises on purpose."""

    code: ClassVar[str] = "wardgate.internal"
    jsonrpc_code: ClassVar[int] = -32603
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    public_message: ClassVar[str] = "Internal error"

    def __init__(self, detail: str = "", *, data: Any = None) -> None:
        super().__init__(detail or self.public_message)
        self.detail = detail or self.public_message
        #: Extra JSON-RPC ``error.data`` that is safe to show the client.
        self.data = data


class ConfigError(WardgateError):
    """The configuration is invalid; ``detail`` names the file, key and fault."""

    code = "wardgate.config"
    exit_code = 2


class ProtocolError(WardgateError):
    """The client sent something that is not valid MCP / JSON-RPC."""

    code = "wardgate.protocol"
    jsonrpc_code = -32600
    http_status = 400
    public_message = "Invalid request"


class ParseError(ProtocolError):
    code = "wardgate.parse"
    jsonrpc_code = -32700
    public_message = "Parse error"


class InvalidParams(ProtocolError):
    code = "wardgate.invalid_params"
    jsonrpc_code = -32602
    public_message = "Invalid params"


class UnknownTarget(InvalidParams):
    """A tool, prompt or resource that the route does not serve (or will not show).

    Answered in-band, as an MCP server answers an unknown tool.
    """

    code = "wardgate.unknown_target"
    http_status = 200
    public_message = "Unknown tool, prompt or resource"


class MethodNotFound(ProtocolError):
    code = "wardgate.method_not_found"
    jsonrpc_code = -32601
    http_status = 404
    public_message = "Method not found"


class HeaderMismatch(ProtocolError):
    code = "wardgate.header_mismatch"
    jsonrpc_code = -32020
    public_message = "Header mismatch"


class UnsupportedVersion(ProtocolError):
    code = "wardgate.unsupported_version"
    jsonrpc_code = -32022
    public_message = "Unsupported protocol version"


class PayloadTooLarge(ProtocolError):
    code = "wardgate.payload_too_large"
    http_status = 413
    public_message = "Payload too large"


class SessionNotFound(ProtocolError):
    code = "wardgate.session_not_found"
    http_status = 404
    public_message = "Session not found"


class Denied(WardgateError):
    """A guard refused the call. The client learns only the decision id."""

    code = "wardgate.denied"
    jsonrpc_code = -32003
    http_status = 200
    public_message = "Request denied"


class AuthenticationFailed(Denied):
    code = "wardgate.unauthenticated"
    http_status = 401
    public_message = "Unauthenticated"


class UpstreamError(WardgateError):
    """The upstream server failed, died or answered with garbage."""

    code = "wardgate.upstream"
    jsonrpc_code = -32603
    http_status = 502
    public_message = "Upstream unavailable"


class UpstreamTimeout(UpstreamError):
    code = "wardgate.upstream_timeout"
    jsonrpc_code = -32001
    http_status = 504
    public_message = "Upstream timed out"


class UpstreamBusy(UpstreamError):
    """The upstream is at its process cap and none of its processes is idle."""

    code = "wardgate.upstream_busy"
    http_status = 503
    public_message = "Upstream busy"


class TooManySessions(WardgateError):
    """No place for another session (global or per-principal cap).

    The client sees the same answer whichever cap was hit; ``detail`` (logged) says which.
    """

    code = "wardgate.too_many_sessions"
    http_status = 503
    public_message = "Too many sessions"

    def __init__(self, detail: str = "", *, retry_after: int = 60) -> None:
        super().__init__(detail)
        #: Seconds a client should wait before trying again (the edge sends ``Retry-After``).
        self.retry_after = max(1, retry_after)
