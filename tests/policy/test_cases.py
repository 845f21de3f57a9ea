"""The example policy set: Cedar and Rego give the same decisions on the shared cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.conftest import EXAMPLES, example_engine
from wardgate.policy.cases import load_cases, run_cases
from wardgate.policy.engines import PolicyEngine, PolicyLoadError


async def test_the_example_set_passes_its_cases(example: PolicyEngine) -> None:
    results = await run_cases(example, load_cases(EXAMPLES / "cases.toml"))
    failures = [r.report() for r in results if not r.passed]
    assert failures == []
    assert len(results) >= 25


async def test_cedar_and_rego_decide_alike() -> None:
    cases = load_cases(EXAMPLES / "cases.toml")
    cedar = await run_cases(example_engine("cedar"), cases)
    rego = await run_cases(example_engine("rego"), cases)
    for c, r in zip(cedar, rego, strict=True):
        assert (c.decision.allowed, c.decision.reasons, c.decision.obligations) == (
            r.decision.allowed,
            r.decision.reasons,
            r.decision.obligations,
        ), c.case.name


async def test_a_wrong_expectation_fails_with_a_diff(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        """
[[case]]
name = "wrong on purpose"
expect = "allow"
reasons = ["read-tools-humans"]
input.subject = { id = "a", tenant = "acme", groups = ["staff"] }
input.action = { method = "tools/call", name = "read_record", kind = "tool", upstream = "crm" }
input.resource = { route = "crm", tenant = "globex" }
"""
    )
    (result,) = await run_cases(example_engine("cedar"), load_cases(cases))
    assert not result.passed
    report = result.report()
    assert "- expected 'allow'" in report and "+ got      'deny'" in report
    assert "tenant-isolation" in report


@pytest.mark.parametrize(
    "body",
    [
        "[[case]]\nname='x'\nexpect='maybe'\ninput.action={method='ping'}\ninput.resource={route='r'}",
        "",
        "[[case",
    ],
)
def test_a_malformed_case_file_is_refused(tmp_path: Path, body: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(PolicyLoadError):
        load_cases(path)
