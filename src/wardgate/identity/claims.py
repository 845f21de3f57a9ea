"""Claims to Principal fields, shared by the JWT verifier and token introspection.

Each function raises :class:`ClaimError` with the reason; the caller turns it into its
own :class:`~wardgate.errors.AuthenticationFailed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["CNF_METHODS", "ClaimError", "confirmation", "scopes", "tenant"]

#: Confirmation methods we can check (RFC 9449 DPoP, RFC 8705 certificate-bound).
CNF_METHODS = frozenset({"jkt", "x5t#S256"})


class ClaimError(ValueError):
    """A claim is missing or malformed."""


def scopes(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """Scopes from a space-separated string or a list of strings."""
    value = claims.get(claim)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ClaimError(f"scope claim {claim!r} malformed")


def confirmation(claims: Mapping[str, Any]) -> Mapping[str, str]:
    """The ``cnf`` claim; a binding we cannot check is refused, never dropped."""
    cnf = claims.get("cnf")
    if cnf is None:
        return MappingProxyType({})
    if not isinstance(cnf, dict):
        raise ClaimError("cnf is not an object")
    unknown = set(cnf) - CNF_METHODS
    if unknown:
        # Never downgrade a binding we cannot check to a bearer token.
        raise ClaimError(f"unsupported cnf members {sorted(unknown)}")
    if not all(isinstance(v, str) and v for v in cnf.values()):
        raise ClaimError("cnf member malformed")
    return MappingProxyType(dict(cnf))


def tenant(
    claims: Mapping[str, Any],
    fixed: str | None,
    claim: str | None,
    allowed: frozenset[str] | None,
) -> str | None:
    """A fixed tenant wins; else the tenant claim, which must be allowed when a list is set."""
    if fixed is not None:
        return fixed
    if claim is None:
        return None
    value = claims.get(claim)
    if not isinstance(value, str) or not value:
        raise ClaimError(f"tenant claim {claim!r} missing")
    if allowed is not None and value not in allowed:
        raise ClaimError(f"tenant {value!r} not allowed")
    return value
