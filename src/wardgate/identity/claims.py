"""Claims to Principal fields, shared by the JWT verifier and token introspection.

Each function raises :class:`ClaimError` with the reason; the caller turns it into its
own :class:`~wardgate.errors.AuthenticationFailed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "CNF_METHODS",
    "MAX_TIME",
    "ClaimError",
    "claim_value",
    "confirmation",
    "scopes",
    "tenant",
    "time_claim",
]

#: Confirmation methods we can check (RFC 9449 DPoP, RFC 8705 certificate-bound).
CNF_METHODS = frozenset({"jkt", "x5t#S256"})


#: The largest time claim believed: 9999-12-31T23:59:59Z. Beyond it a float loses
#: whole seconds, and ``10**400`` would overflow ``float()``.
MAX_TIME = 253_402_300_799


class ClaimError(ValueError):
    """A claim is missing or malformed."""


def time_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    """A NumericDate (``exp``, ``nbf``, ``iat``): a finite number of seconds, 0..MAX_TIME.

    ``true`` (a bool is an int in Python), strings, NaN, infinities and huge integers
    are all refused, never coerced: an ``exp`` that cannot be compared never expires.

    Raises:
        ClaimError: missing when required, or not such a number.
    """
    value = claims.get(name)
    if value is None:
        if required:
            raise ClaimError(f"missing {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(f"{name} is not a number")
    # Compare before float(): float(10**400) raises OverflowError.
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_TIME:
        raise ClaimError(f"{name} is out of range")
    return float(value)


def claim_value(claims: Mapping[str, Any], claim: str) -> Any:
    """A top-level claim, or with a leading ``/`` an RFC 6901 JSON Pointer into claims."""
    if not claim.startswith("/"):
        return claims.get(claim)
    value: Any = claims
    for token in claim[1:].split("/"):
        if not isinstance(value, Mapping):
            return None
        value = value.get(token.replace("~1", "/").replace("~0", "~"))
    return value


def scopes(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """Scopes from a space-separated string or a list of strings (``claim`` as in
    :func:`claim_value`)."""
    value = claim_value(claims, claim)
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
