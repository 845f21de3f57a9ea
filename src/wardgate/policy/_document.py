"""The decision document a Rego policy answers with (in process and over OPA).

``data.<package>.decision`` is either a boolean (allow or not) or an object::

    {"allow": true, "reasons": ["read-tools-humans"],
     "obligations": {"max_result_bytes": 65536, "redact": ["ssn"]}}

Anything else (undefined, a string, an ``allow`` that is not a boolean) denies.
"""

from __future__ import annotations

from typing import Any

from wardgate.policy.decision import DecisionObligations, PolicyDecision

__all__ = ["decision_from_document"]


def decision_from_document(doc: Any, *, engine: str, revision: str) -> PolicyDecision:
    """Translate a decision document; malformed or undefined means deny."""
    if doc is None:
        return PolicyDecision.deny("undefined-decision", revision=revision, engine=engine)
    if isinstance(doc, bool):
        return PolicyDecision(
            doc, ("allow",) if doc else ("default-deny",), revision=revision, engine=engine
        )
    if not isinstance(doc, dict) or not isinstance(doc.get("allow"), bool):
        return PolicyDecision.deny(
            "malformed-decision", revision=revision, engine=engine, error=repr(doc)[:200]
        )
    raw_reasons = doc.get("reasons") or []
    reasons = tuple(sorted(str(r) for r in raw_reasons)) if isinstance(raw_reasons, list) else ()
    if not doc["allow"]:
        return PolicyDecision(False, reasons or ("default-deny",), revision=revision, engine=engine)
    obligations = DecisionObligations()
    raw = doc.get("obligations")
    if isinstance(raw, dict):
        cap = raw.get("max_result_bytes")
        redact = raw.get("redact")
        obligations = DecisionObligations(
            cap if isinstance(cap, int) and not isinstance(cap, bool) else None,
            frozenset(str(f) for f in redact) if isinstance(redact, list) else frozenset(),
        )
    return PolicyDecision(True, reasons, obligations, revision, engine)
