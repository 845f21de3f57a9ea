"""The decision log: one :class:`PolicyDecided` event per policy decision.

The input travels with its secrets redacted: any key that names a credential, and
any value shaped like a bearer token or JWT, is replaced (the input holds no tool
arguments beyond the attributes the operator mapped, but those are operator data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from wardgate.policy.decision import PolicyInput
from wardgate.telemetry.events import GatewayEvent

__all__ = ["PolicyDecided", "redact_input", "redact_value"]

_SECRET_KEY = re.compile(
    r"(?i)(pass(word)?|secret|token|api[_-]?key|authorization|cookie|credential|private)"
)
_SECRET_VALUE = re.compile(
    r"^(?:eyJ[\w-]+\.[\w-]+\.[\w-]*|(?:Bearer|Basic)\s+\S+|ya29\.\S+|AKIA[0-9A-Z]{16}|gh[pousr]_\w{20,}|xox[abpr]-\S+|sk_live_\w+)$"
)
REDACTED = "[REDACTED]"


def redact_input(policy_input: PolicyInput) -> dict[str, Any]:
    """The input as JSON for the log, secrets masked.

    Only the operator-mapped resource attributes and the client address can carry
    caller-chosen strings; the rest comes from the verified token and the route.
    """
    doc = policy_input.to_json()
    resource = doc["resource"]
    resource["attributes"] = redact_value(resource["attributes"])
    doc["subject"]["id"] = redact_value(doc["subject"]["id"])
    return doc


def redact_value(value: Any) -> Any:
    """A copy of a JSON value with credential-named keys and token-shaped values masked."""
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) else redact_value(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value


@dataclass(slots=True)
class PolicyDecided(GatewayEvent):
    """A policy engine decided (allow or deny) for a call or a filtered list.

    Read-only by convention, like every event (not frozen: one is built per call).

    ``items`` counts the list items decided in one batch (0 for a single call);
    ``hidden`` counts the ones filtered out.
    """

    kind: ClassVar[str] = "policy.decision"
    engine: str
    revision: str
    method: str | None
    target: str | None
    subject: str
    tenant: str | None
    allowed: bool
    reasons: tuple[str, ...]
    input: Mapping[str, Any]
    latency_ms: float
    error: str | None = None
    items: int = 0
    hidden: int = 0
