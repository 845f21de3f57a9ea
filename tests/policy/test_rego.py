"""Rego in process: compiled once at load, broken or allow-all modules never load."""

from __future__ import annotations

import pytest

from wardgate.policy.decision import Action, PolicyContext, PolicyInput, Resource, Subject
from wardgate.policy.engines import PolicyLintError, PolicyLoadError
from wardgate.policy.rego import RegoEngine

GOOD = """package wardgate.authz
import rego.v1
default decision := false
decision if input.subject.tenant == input.resource.tenant
"""
INPUT = PolicyInput(
    Subject("a", "acme"), Action("ping"), Resource("r", tenant="acme"), PolicyContext()
)
OTHER = PolicyInput(
    Subject("a", "acme"), Action("ping"), Resource("r", tenant="globex"), PolicyContext()
)


async def test_a_boolean_decision_allows_and_denies() -> None:
    engine = RegoEngine({"a.rego": GOOD})
    assert (await engine.evaluate(INPUT)).allowed
    assert not (await engine.evaluate(OTHER)).allowed
    assert [d.allowed for d in await engine.evaluate_many([INPUT, OTHER, INPUT])] == [
        True,
        False,
        True,
    ]


async def test_an_undefined_decision_denies() -> None:
    engine = RegoEngine({"a.rego": "package wardgate.authz\nimport rego.v1\ndecision if false\n"})
    decision = await engine.evaluate(INPUT)
    assert not decision.allowed and decision.reasons == ("undefined-decision",)


@pytest.mark.parametrize(
    "modules",
    [{"a.rego": "package wardgate.authz\n decision if {"}, {}, {"a.rego": "not rego at all"}],
    ids=["unclosed", "none", "garbage"],
)
def test_a_broken_module_never_loads(modules: dict[str, str]) -> None:
    with pytest.raises(PolicyLoadError):
        RegoEngine(modules)


def test_an_allow_all_never_loads() -> None:
    with pytest.raises(PolicyLintError):
        RegoEngine({"a.rego": "package wardgate.authz\nimport rego.v1\ndecision := true\n"})
