"""Table-driven policy tests, written by policy authors (``wardgate policy test``).

A case file (TOML) holds optional ``[defaults.input]``, deep-merged under every case,
and ``[[case]]`` tables::

    [[case]]
    name = "an acme user cannot read a globex record"
    expect = "deny"                       # or "allow"
    reasons = ["tenant-isolation"]        # optional: the exact reasons
    obligations = { max_result_bytes = 65536, redact = ["ssn"] }   # optional
    input.subject = { id = "alice", tenant = "acme", groups = ["staff"] }
    input.action = { method = "tools/call", name = "read_record", kind = "tool" }
    input.resource = { tenant = "globex" }

A failure prints a diff of what was expected against what the engine decided.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wardgate.policy.decision import PolicyDecision, PolicyInput
from wardgate.policy.engines import PolicyEngine, PolicyLoadError

__all__ = ["Case", "CaseResult", "load_cases", "run_cases"]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    input: PolicyInput
    expect: bool
    reasons: tuple[str, ...] | None = None
    max_result_bytes: int | None = None
    redact: frozenset[str] | None = None
    #: Whether the case checks obligations at all (absent: not checked).
    checks_obligations: bool = False


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: PolicyDecision
    differences: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.differences

    def report(self) -> str:
        """A readable diff: one ``- expected`` / ``+ got`` pair per difference."""
        if self.passed:
            return f"ok    {self.case.name}"
        lines = [f"FAIL  {self.case.name}"]
        lines.extend(f"      {d}" for d in self.differences)
        if self.decision.error:
            lines.append(f"      engine error: {self.decision.error}")
        return "\n".join(lines)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_cases(path: str | Path) -> list[Case]:
    """Read a case file.

    Raises:
        PolicyLoadError: the file is not valid TOML, or a case is malformed (the
            message names the case).
    """
    try:
        doc = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyLoadError(f"{path}: {exc}") from exc
    defaults = dict(doc.get("defaults", {}).get("input", {}))
    cases: list[Case] = []
    for n, raw in enumerate(doc.get("case", [])):
        name = str(raw.get("name", f"case {n + 1}"))
        try:
            expect = raw["expect"]
            if expect not in ("allow", "deny"):
                raise ValueError("expect must be 'allow' or 'deny'")
            policy_input = PolicyInput.from_json(_merge(defaults, raw.get("input", {})))
            obligations = raw.get("obligations")
            reasons = raw.get("reasons")
            cases.append(
                Case(
                    name,
                    policy_input,
                    expect == "allow",
                    tuple(sorted(reasons)) if reasons is not None else None,
                    obligations.get("max_result_bytes") if obligations is not None else None,
                    frozenset(obligations.get("redact", ())) if obligations is not None else None,
                    obligations is not None,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PolicyLoadError(f"{path}: case {name!r}: {exc!r}") from exc
    if not cases:
        raise PolicyLoadError(f"{path}: no [[case]] tables")
    return cases


def _diff(case: Case, decision: PolicyDecision) -> tuple[str, ...]:
    out: list[str] = []

    def pair(what: str, expected: object, got: object) -> None:
        out.append(f"{what}: - expected {expected!r}")
        out.append(f"{' ' * len(what)}  + got      {got!r}")

    if decision.allowed != case.expect:
        pair("decision", _word(case.expect), _word(decision.allowed))
        out.append(f"reasons given: {list(decision.reasons)}")
    if case.reasons is not None and tuple(sorted(decision.reasons)) != case.reasons:
        pair("reasons", list(case.reasons), sorted(decision.reasons))
    if case.checks_obligations:
        got = decision.obligations
        if got.max_result_bytes != case.max_result_bytes:
            pair("max_result_bytes", case.max_result_bytes, got.max_result_bytes)
        if got.redact_fields != (case.redact or frozenset()):
            pair("redact", sorted(case.redact or ()), sorted(got.redact_fields))
    return tuple(out)


def _word(allowed: bool) -> str:
    return "allow" if allowed else "deny"


async def run_cases(engine: PolicyEngine, cases: list[Case]) -> list[CaseResult]:
    """Decide every case's input with ``engine`` (one batch) and compare."""
    decisions = await engine.evaluate_many([c.input for c in cases])
    return [CaseResult(c, d, _diff(c, d)) for c, d in zip(cases, decisions, strict=True)]
