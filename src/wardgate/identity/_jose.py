"""Small helpers around joserfc shared by the JWT and DPoP checks."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry, deserialize_compact

from wardgate.errors import AuthenticationFailed
from wardgate.net.fetch import loads_strict

__all__ = ["b64url_sha256", "loads_strict", "split_unverified", "verify_signature"]

MAX_JWT_BYTES = 16 * 1024


def b64url_sha256(data: bytes) -> str:
    """base64url (no padding) of SHA-256 of ``data``."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def _b64_json(segment: str, what: str, label: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = loads_strict(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise AuthenticationFailed(f"{label}: {what} is not base64url strict JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise AuthenticationFailed(f"{label}: {what} is not a JSON object")
    return value


def split_unverified(token: str, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, *unverified*: only to choose how to verify.

    Raises:
        AuthenticationFailed: not a three-part compact JWS of sane size.
    """
    if len(token) > MAX_JWT_BYTES:
        raise AuthenticationFailed(f"{label}: token longer than {MAX_JWT_BYTES} bytes")
    if not token.isascii():
        raise AuthenticationFailed(f"{label}: token is not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthenticationFailed(f"{label}: not a compact JWS ({len(parts)} segments)")
    return _b64_json(parts[0], "header", label), _b64_json(parts[1], "payload", label)


def verify_signature(
    token: str, key: Key, algorithms: Collection[str], label: str
) -> dict[str, Any]:
    """Verify ``token`` with exactly ``key`` and return its verified claims.

    Raises:
        AuthenticationFailed: bad signature, disallowed algorithm, key/alg mismatch,
            unknown ``crit`` header, or a payload that is not a JSON object.
    """
    registry = JWSRegistry(algorithms=list(algorithms), strict_check_header=False)
    registry.max_header_length = 4096  # a DPoP header embeds an RSA key
    registry.max_payload_length = MAX_JWT_BYTES
    try:
        obj = deserialize_compact(token, key, registry=registry)
    except JoseError as exc:
        raise AuthenticationFailed(f"{label}: signature rejected ({exc.error}: {exc})") from exc
    try:
        claims = loads_strict(obj.payload)
    except (ValueError, RecursionError) as exc:
        raise AuthenticationFailed(f"{label}: payload is not strict JSON ({exc})") from exc
    if not isinstance(claims, dict):
        raise AuthenticationFailed(f"{label}: payload is not a JSON object")
    return claims
