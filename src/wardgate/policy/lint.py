"""The wildcard lint: no policy may grant every action or every resource.

Rejected unless the policy marks itself as an audited exception with a reason:

- Cedar: a ``permit`` whose action scope is unconstrained and whose conditions never
  mention ``action``, or likewise for ``resource``. Exception: ``@exception("reason")``.
- Rego: a rule ``allow`` (or ``decision``/``allowed``) whose body is empty or always
  true (``allow := true``, ``allow if true``, ``allow { true }``, ``default allow :=
  true``). Exception: a ``# wardgate:exception reason`` comment on the line before.
- Tool globs in config (``*``, ``tools.*``, ``prefix*``): a name list that matches every
  tool. Exception: an ``exception`` reason beside the glob.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cedarpy
from cedarpy import pst

__all__ = ["LintFinding", "lint_cedar", "lint_globs", "lint_rego"]


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One wildcard grant; ``where`` names the policy id or the file and line."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _mentions(node: Any, var: str) -> bool:
    """Whether a Cedar expression tree refers to variable ``var`` anywhere."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, pst.Var):
            if item.name == var:
                return True
            continue
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif hasattr(item, "__dataclass_fields__"):
            stack.extend(getattr(item, f) for f in item.__dataclass_fields__)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


def lint_cedar(policies: str | cedarpy.PolicySet) -> list[LintFinding]:
    """Wildcard grants in a Cedar policy set (see the module docstring).

    Raises:
        ValueError: the policies do not parse.
    """
    handle = (
        policies
        if isinstance(policies, cedarpy.PolicySet)
        else cedarpy.PolicySet.from_str(policies)
    )
    tree = handle.to_pst()
    findings: list[LintFinding] = []
    every = {**tree.static_policies, **tree.templates}
    for pid, policy in every.items():
        if policy.effect != "permit":
            continue
        reason = policy.annotations.get("exception")
        if reason is not None and reason.strip():
            continue
        name = policy.annotations.get("id", pid)
        for var in ("action", "resource"):
            scope = getattr(policy, var)
            if isinstance(scope, pst.ScopeAny) and not _mentions(policy.clauses, var):
                findings.append(
                    LintFinding(name, f"permit is unconstrained on {var} (no @exception)")
                )
    return findings


_RULES = "(allow|allowed|decision)"
_ALWAYS = [
    re.compile(rf"^(?:default\s+)?{_RULES}\s*:?=\s*true$"),
    re.compile(rf"^{_RULES}\s*(?:if\s*)?\{{\s*(?:true\s*)?\}}$"),
    re.compile(rf"^{_RULES}\s+if\s+true$"),
    re.compile(rf"^{_RULES}$"),
    re.compile(rf'^(?:default\s+)?{_RULES}\s*:?=\s*\{{\s*"allow"\s*:\s*true\s*\}}$'),
]
_OPENS = re.compile(rf"^{_RULES}\s*(?:if\s*)?\{{$")
_REGO_EXCEPTION = re.compile(r"#\s*wardgate:exception\s+\S")


def _code(line: str) -> str:
    return line.split("#", 1)[0].strip()


def lint_rego(source: str, filename: str = "<rego>") -> list[LintFinding]:
    """Allow-all rules in one Rego module (see the module docstring)."""
    findings: list[LintFinding] = []
    lines = source.splitlines()
    for i, line in enumerate(lines):
        code = _code(line)
        rule = next((m[1] for p in _ALWAYS if (m := p.match(code))), None)
        if rule is None and (m := _OPENS.match(code)):
            # A body opened here: allow-all if it holds nothing but ``true``.
            body = [c for c in (_code(x) for x in lines[i + 1 :]) if c]
            if body and (body[0] == "}" or (body[0] == "true" and body[1:2] == ["}"])):
                rule = m[1]
        if rule is None:
            continue
        previous = lines[i - 1] if i else ""
        if _REGO_EXCEPTION.search(line) or _REGO_EXCEPTION.search(previous):
            continue
        findings.append(LintFinding(f"{filename}:{i + 1}", f"rule {rule} allows everything"))
    return findings


def lint_globs(globs: Iterable[str], *, exception: str | None = None) -> list[LintFinding]:
    """Tool-name globs that match every tool (``*``, ``tools.*``, ``**``)."""
    if exception and exception.strip():
        return []
    findings = []
    for glob in globs:
        head = glob.split(".", 1)[-1] if glob.startswith("tools.") else glob
        if head.strip("*") == "" or glob in ("tools.*", "tools/*"):
            findings.append(LintFinding(f"glob {glob!r}", "matches every tool (no exception)"))
    return findings
