"""The wildcard lint: no grant of every action or every resource without an exception."""

from __future__ import annotations

import pytest

from wardgate.policy.lint import lint_cedar, lint_globs, lint_rego

SCOPED = 'permit (principal, action == Wardgate::Action::"tools/call", resource)'


@pytest.mark.parametrize(
    ("policy", "problems"),
    [
        ("permit (principal, action, resource);", 2),
        (f"{SCOPED};", 1),  # every resource
        ('permit (principal, action, resource in Wardgate::Upstream::"crm");', 1),
        (f'{SCOPED} when {{ resource.name == "read_record" }};', 0),
        (
            "permit (principal, action, resource) when "
            '{ action == Wardgate::Action::"ping" && resource.kind == "none" };',
            0,
        ),
        ("forbid (principal, action, resource);", 0),  # a forbid grants nothing
        ('@exception("audited: SEC-1") permit (principal, action, resource);', 0),
        ('@exception("") permit (principal, action, resource);', 2),  # a reason is required
    ],
)
def test_cedar(policy: str, problems: int) -> None:
    assert len(lint_cedar(policy)) == problems


ALLOW_ALL = [
    "allow := true",
    "allow = true",
    "default allow := true",
    "allow if true",
    "allow { true }",
    "allow if { true }",
    "allow",
    'decision := {"allow": true}',
    "allow if {\n}",
    "allow if {\n  true\n}",
]


@pytest.mark.parametrize("rule", ALLOW_ALL)
def test_rego_allow_all_is_rejected(rule: str) -> None:
    source = f"package x\nimport rego.v1\n{rule}\n"
    findings = lint_rego(source, "x.rego")
    assert len(findings) == 1 and findings[0].where == "x.rego:3"


@pytest.mark.parametrize("rule", ALLOW_ALL[:3])
def test_rego_exception_with_a_reason_passes(rule: str) -> None:
    assert lint_rego(f"package x\n# wardgate:exception break-glass SEC-9\n{rule}\n") == []
    assert lint_rego(f"package x\n# wardgate:exception\n{rule}\n") != []  # no reason


def test_rego_conditional_allow_passes() -> None:
    source = 'package x\ndefault allow := false\nallow if {\n  input.subject.id == "a"\n}\n'
    assert lint_rego(source) == []


@pytest.mark.parametrize(
    ("glob", "bad"),
    [("*", True), ("tools.*", True), ("**", True), ("crm.*", False), ("read_*", False)],
)
def test_tool_globs(glob: str, bad: bool) -> None:
    assert bool(lint_globs([glob])) is bad
    assert lint_globs([glob], exception="demo only") == []
