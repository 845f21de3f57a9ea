"""The OPA engine against a faithful stand-in of OPA's Data API (no OPA binary here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.policy.conftest import EXAMPLES, example_engine
from tests.policy.opa_standin import OpaStandIn
from wardgate.policy.cases import load_cases, run_cases
from wardgate.policy.engines import PolicyLoadError
from wardgate.policy.opa import OpaEngine
from wardgate.policy.source import read_policy_dir


@pytest.fixture
async def opa() -> AsyncIterator[OpaStandIn]:
    files = read_policy_dir(EXAMPLES / "rego")
    server = OpaStandIn({"authz.rego": files["authz.rego"]}, files["data.json"])
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def engine(opa: OpaStandIn) -> AsyncIterator[OpaEngine]:
    # Generous: the machine running the tests may be loaded; the hang test has its own.
    client = OpaEngine(opa.url, timeout_s=5.0)
    yield client
    await client.aclose()


async def test_opa_gives_the_example_sets_decisions(opa: OpaStandIn, engine: OpaEngine) -> None:
    cases = load_cases(EXAMPLES / "cases.toml")
    results = await run_cases(engine, cases)
    assert [r.report() for r in results if not r.passed] == []
    cedar = await run_cases(example_engine("cedar"), cases)
    assert [r.decision.allowed for r in results] == [r.decision.allowed for r in cedar]
    assert results[0].decision.revision == "authz@r1"  # OPA's provenance
    assert "input" in opa.requests[0] and opa.requests[0]["input"]["subject"]["tenant"] == "acme"


async def test_the_server_going_away_denies(opa: OpaStandIn, engine: OpaEngine) -> None:
    (case,) = [
        c for c in load_cases(EXAMPLES / "cases.toml") if c.name.startswith("acme staff read")
    ]
    assert (await engine.evaluate(case.input)).allowed
    await opa.stop()
    decision = await engine.evaluate(case.input)
    assert not decision.allowed and decision.reasons == ("engine-failure",)
    assert decision.error is not None and "unreachable" in decision.error


@pytest.mark.parametrize("mode", ["hang", "error500", "garbage"])
async def test_a_failing_server_denies(opa: OpaStandIn, engine: OpaEngine, mode: str) -> None:
    (case,) = [
        c for c in load_cases(EXAMPLES / "cases.toml") if c.name.startswith("acme staff read")
    ]
    opa.mode = mode
    short = OpaEngine(opa.url, timeout_s=0.2)
    try:
        decision = await (short if mode == "hang" else engine).evaluate(case.input)
    finally:
        await short.aclose()
    assert not decision.allowed and decision.reasons == ("engine-failure",)
    opa.mode = "ok"  # and a healthy answer right after is allowed again
    opa.release.set()
    assert (await engine.evaluate(case.input)).allowed


async def test_an_undefined_decision_denies(opa: OpaStandIn) -> None:
    client = OpaEngine(opa.url, path="wardgate/authz/no_such_rule")
    try:
        (case, *_) = load_cases(EXAMPLES / "cases.toml")
        decision = await client.evaluate(case.input)
        assert not decision.allowed and decision.reasons == ("undefined-decision",)
    finally:
        await client.aclose()


async def test_fail_open_is_named_and_allows_when_opa_is_down(opa: OpaStandIn) -> None:
    client = OpaEngine(opa.url, fail_open=True, timeout_s=0.3)
    try:
        await opa.stop()
        (case, *_) = load_cases(EXAMPLES / "cases.toml")
        decision = await client.evaluate(case.input)
        assert decision.allowed and decision.reasons == ("engine-failure-fail-open",)
    finally:
        await client.aclose()


@pytest.mark.parametrize("url", ["ftp://opa:8181", "http://user:pw@opa:8181", "opa:8181"])
def test_bad_urls_are_refused_at_construction(url: str) -> None:
    with pytest.raises(PolicyLoadError):
        OpaEngine(url)
