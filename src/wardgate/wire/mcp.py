"""MCP protocol constants and the header rules of both eras."""

from __future__ import annotations

import base64
import binascii
from typing import Final, Literal

from wardgate.errors import HeaderMismatch

__all__ = [
    "HANDSHAKE_VERSIONS",
    "KNOWN_VERSIONS",
    "LATEST_HANDSHAKE_VERSION",
    "META_PROTOCOL_VERSION",
    "MODERN_VERSIONS",
    "Era",
    "decode_header_value",
    "encode_header_value",
    "era_of",
]

Era = Literal["handshake", "modern"]

HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS: Final = ("2026-07-28",)
KNOWN_VERSIONS: Final = HANDSHAKE_VERSIONS + MODERN_VERSIONS
LATEST_HANDSHAKE_VERSION: Final = "2025-11-25"
#: The version a server assumes when a handshake-era client sends no header.
DEFAULT_HANDSHAKE_VERSION: Final = "2025-03-26"

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"

H_PROTOCOL_VERSION: Final = "mcp-protocol-version"
H_SESSION_ID: Final = "mcp-session-id"
H_METHOD: Final = "mcp-method"
H_NAME: Final = "mcp-name"
H_PARAM_PREFIX: Final = "mcp-param-"
H_LAST_EVENT_ID: Final = "last-event-id"

#: Methods whose ``Mcp-Name`` header mirrors ``params.name`` / ``params.uri``.
NAMED_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get"})

_B64_PREFIX = "=?base64?"
_B64_SUFFIX = "?="


def era_of(version_header: str | None) -> Era:
    """Route a request to an era the way the official SDK does.

    A missing header or a handshake-era version is the handshake era; anything else
    (including versions we do not know, which are then refused) is the modern era.
    """
    if version_header is None or version_header in HANDSHAKE_VERSIONS:
        return "handshake"
    return "modern"


def _plain_safe(value: str) -> bool:
    return (
        value.isascii()
        and value == value.strip()
        and all(0x20 <= ord(c) < 0x7F for c in value)
        and not (value.startswith(_B64_PREFIX) and value.endswith(_B64_SUFFIX))
    )


def encode_header_value(value: str) -> str:
    """Encode a value for ``Mcp-Name`` / ``Mcp-Param-*`` (plain, or ``=?base64?…?=``)."""
    if _plain_safe(value):
        return value
    return _B64_PREFIX + base64.b64encode(value.encode()).decode() + _B64_SUFFIX


def decode_header_value(value: str) -> str:
    """Decode a header value written by :func:`encode_header_value`.

    Raises:
        HeaderMismatch: the sentinel wraps something that is not base64 UTF-8.
    """
    if value.startswith(_B64_PREFIX) and value.endswith(_B64_SUFFIX):
        inner = value[len(_B64_PREFIX) : -len(_B64_SUFFIX)]
        try:
            return base64.b64decode(inner, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HeaderMismatch("header value is not valid base64 UTF-8") from None
    return value
