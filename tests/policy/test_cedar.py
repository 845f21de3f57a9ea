"""Cedar: validated against the schema at load, linted, parsed once, batched."""

from __future__ import annotations

import cedarpy
import pytest

from wardgate.policy.cedar import CedarEngine
from wardgate.policy.decision import Action, PolicyContext, PolicyInput, Resource, Subject
from wardgate.policy.engines import PolicyLintError, PolicyLoadError

CALL = 'permit (principal, action == Wardgate::Action::"tools/call", resource)'
READ = """
@id("read") @max_result_bytes("100") @redact("ssn")
permit (principal in Wardgate::Group::"staff", action == Wardgate::Action::"tools/call", resource)
when { resource.tenant == principal.tenant };
"""


def _input(tenant: str = "acme", groups: frozenset[str] = frozenset({"staff"})) -> PolicyInput:
    return PolicyInput(
        Subject("alice", "acme", groups=groups),
        Action("tools/call", "read_record", "tool", "crm"),
        Resource("crm", "crm", tenant),
        PolicyContext(),
    )


async def test_allows_what_a_policy_permits_with_its_obligations() -> None:
    engine = CedarEngine(READ, revision="r1")
    decision = await engine.evaluate(_input())
    assert decision.allowed and decision.reasons == ("read",)
    assert decision.obligations.max_result_bytes == 100
    assert decision.obligations.redact_fields == frozenset({"ssn"})
    assert (decision.engine, decision.revision) == ("cedar", "r1")


async def test_denies_by_default_what_no_policy_permits() -> None:
    engine = CedarEngine(READ)
    other_tenant, no_group = await engine.evaluate_many(
        [_input("globex"), _input(groups=frozenset())]
    )
    assert not other_tenant.allowed and other_tenant.reasons == ("default-deny",)
    assert not no_group.allowed


async def test_a_batch_keeps_inputs_that_share_a_target_apart() -> None:
    engine = CedarEngine(READ)
    got = await engine.evaluate_many([_input(), _input("globex"), _input()])
    assert [d.allowed for d in got] == [True, False, True]


@pytest.mark.parametrize(
    "bad",
    [
        f'{CALL} when {{ resource.colour == "red" }};',
        'permit (principal, action == Wardgate::Action::"frobnicate", resource)'
        ' when { resource.kind == "tool" };',
        "permit (principal, action, resource",
        "",
    ],
    ids=["unknown-attribute", "unknown-action", "syntax", "empty"],
)
def test_a_policy_that_fails_validation_never_loads(bad: str) -> None:
    with pytest.raises(PolicyLoadError):
        CedarEngine(bad)


def test_a_wildcard_permit_never_loads_unless_an_audited_exception() -> None:
    wildcard = 'permit (principal in Wardgate::Group::"admins", action, resource);'
    with pytest.raises(PolicyLintError):
        CedarEngine(wildcard)
    CedarEngine('@exception("break-glass, ticket SEC-12") ' + wildcard)


def test_entities_that_do_not_fit_the_schema_never_load() -> None:
    bad = '[{"uid": {"type": "Wardgate::Subject", "id": "x"}, "attrs": {}, "parents": []}]'
    with pytest.raises(PolicyLoadError):
        CedarEngine(READ, entities=bad)


async def test_policies_are_parsed_once_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CedarEngine(READ)
    parsed: list[str] = []
    real = cedarpy.PolicySet.from_str

    def spy(text: str, **kw: object) -> cedarpy.PolicySet:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(cedarpy.PolicySet, "from_str", staticmethod(spy))
    seen: list[object] = []
    real_batch = cedarpy.is_authorized_batch

    def batch(requests: list[dict[str, object]], policies: object, **kw: object) -> object:
        seen.append(policies)
        return real_batch(requests, policies, **kw)  # type: ignore[arg-type]

    deltas: list[str] = []
    real_delta = cedarpy.Entities.with_added_json_str

    def delta(self: cedarpy.Entities, text: str, schema: object = None) -> cedarpy.Entities:
        deltas.append(text)
        return real_delta(self, text)

    monkeypatch.setattr(cedarpy, "is_authorized_batch", batch)
    monkeypatch.setattr(cedarpy.Entities, "with_added_json_str", delta)
    for _ in range(3):
        assert (await engine.evaluate(_input())).allowed
    assert parsed == []
    assert all(isinstance(p, cedarpy.PolicySet) for p in seen) and len(seen) == 3
    # The same caller on the same target: its entity delta is parsed once.
    assert len(deltas) == 1
    assert not (await engine.evaluate(_input("globex"))).allowed
    assert len(deltas) == 2


async def test_a_cedar_failure_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CedarEngine(READ)

    def boom(*a: object, **k: object) -> object:
        raise RuntimeError("cedar exploded")

    monkeypatch.setattr(cedarpy, "is_authorized_batch", boom)
    decision = await engine.evaluate(_input())
    assert not decision.allowed and decision.reasons == ("engine-failure",)
    assert decision.error is not None


async def test_fail_open_is_a_named_option(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CedarEngine(READ, fail_open=True)

    def boom(*a: object, **k: object) -> object:
        raise RuntimeError("cedar exploded")

    monkeypatch.setattr(cedarpy, "is_authorized_batch", boom)
    decision = await engine.evaluate(_input())
    assert decision.allowed and decision.reasons == ("engine-failure-fail-open",)
