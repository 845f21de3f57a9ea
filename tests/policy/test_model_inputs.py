"""The policy input is built from the core's call context and the message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wardgate.core.context import CallContext
from wardgate.core.obligations import Obligations
from wardgate.identity.principal import Principal
from wardgate.policy.decision import DecisionObligations, PolicyInput
from wardgate.policy.inputs import InputBuilder, InputConfig, RateTracker
from wardgate.wire.jsonrpc import Message

ALICE = Principal(
    "alice",
    "jwt",
    tenant="acme",
    scopes=frozenset({"crm.read"}),
    claims={"groups": ["staff", 7], "amr": ["pwd", "mfa"], "device_trusted": True},
)
# 2026-11-30 15:30 UTC: 10:30 in New York, 16:30 in Berlin (a Monday).
WHEN = datetime(2026, 11, 30, 15, 30, tzinfo=UTC).timestamp()


def _call(name: str, arguments: dict[str, object] | None = None) -> Message:
    params = {"name": name, "arguments": arguments or {}}
    return Message({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}, "request")


def _ctx(principal: Principal = ALICE, addr: str | None = "203.0.113.9") -> CallContext:
    return CallContext(
        route="crm",
        principal=principal,
        client_addr=addr,
        received_at=WHEN,
        upstream="crm",
        target="read_record",
    )


CONFIG = InputConfig(
    tool_attributes={"read_record": {"tenant": "customer.tenant", "record": "id"}},
    risk_table=[("203.0.113.0/24", 60), ("203.0.113.9/32", 95), ("10.0.0.0/8", 0)],
    default_risk=20,
    tenant_time_zones={"acme": "America/New_York", "globex": "Europe/Berlin"},
)


def test_subject_action_resource_context_come_from_the_call() -> None:
    builder = InputBuilder(CONFIG)
    message = _call("crm__read_record", {"customer": {"tenant": "globex"}, "id": 42})
    got = builder.for_request(_ctx(), message)
    assert got.subject.id == "alice"
    assert got.subject.tenant == "acme"
    assert got.subject.groups == frozenset({"staff"})  # a non-string group is dropped
    assert got.subject.mfa and got.subject.device_trusted and got.subject.kind == "human"
    # The unprefixed name the route resolved, not the prefixed one in the message.
    assert (got.action.method, got.action.name, got.action.kind) == (
        "tools/call",
        "read_record",
        "tool",
    )
    assert got.action.upstream == "crm"
    # The tenant of the data comes from the declared argument, not from the caller.
    assert got.resource.tenant == "globex"
    assert got.resource.attrs == {"record": "42"}
    assert got.context.risk == 95  # the most specific CIDR wins
    assert (got.context.hour, got.context.weekday) == (10, 1)
    assert got.context.request_rate == 1


def test_time_of_day_is_in_the_tenants_zone() -> None:
    builder = InputBuilder(CONFIG)
    globex = Principal("bob", "jwt", tenant="globex")
    assert builder.for_request(_ctx(globex), _call("x")).context.hour == 16


def test_without_a_mapping_the_data_is_the_callers_own_tenant() -> None:
    builder = InputBuilder(CONFIG)
    got = builder.for_request(_ctx(), _call("search_records", {"tenant": "globex"}))
    assert got.resource.tenant == "acme"


@pytest.mark.parametrize(
    ("addr", "risk"),
    [("203.0.113.7", 60), ("::ffff:203.0.113.9", 95), ("10.1.2.3", 0), ("bogus", 20), (None, 20)],
)
def test_risk_comes_from_the_operators_table(addr: str | None, risk: int) -> None:
    assert InputBuilder(CONFIG).risk(addr) == risk


def test_agents_are_told_apart_from_humans() -> None:
    builder = InputBuilder()
    workload = Principal("spiffe://acme/agent", "spiffe", tenant="acme")
    own_client = Principal("bot", "jwt", client_id="bot")
    claimed = Principal("x", "jwt", claims={"wardgate_kind": "agent"})
    assert {builder.subject(p).kind for p in (workload, own_client, claimed)} == {"agent"}


def test_the_request_rate_counts_per_subject_in_a_window() -> None:
    now = [100.0]
    rates = RateTracker(60.0, 2, lambda: now[0])
    assert [rates.hit("a"), rates.hit("a"), rates.hit("b")] == [1, 2, 1]
    now[0] += 61
    assert rates.hit("a") == 1
    rates.hit("c")  # a third subject evicts the oldest: the table stays bounded
    assert len(rates._seen) == 2


def test_a_flood_from_one_subject_costs_one_bucket_per_second() -> None:
    now = [0.0]
    rates = RateTracker(60.0, 10, lambda: now[0])
    for i in range(20_000):
        now[0] = i / 1000  # 20 seconds of 1000 requests a second
        count = rates.hit("flooder")
    assert count == 20_000
    assert len(rates._seen["flooder"]) == 20
    assert rates.hit("polite") == 1  # another subject is counted apart


def test_the_input_round_trips_through_json() -> None:
    got = InputBuilder(CONFIG).for_request(_ctx(), _call("read_record", {"id": 1}))
    assert PolicyInput.from_json(got.to_json()) == got
    hash(got)  # inputs are hashable (list decisions are memoised on them)


def test_bad_operator_config_fails_at_construction() -> None:
    with pytest.raises(ValueError):
        InputBuilder(InputConfig(risk_table=[("10.0.0.0/33", 1)]))
    with pytest.raises(Exception):  # noqa: B017 - zoneinfo raises its own error types
        InputBuilder(InputConfig(tenant_time_zones={"acme": "Mars/Olympus"}))


def test_decision_obligations_only_tighten_the_call() -> None:
    call = Obligations()
    DecisionObligations(1000, frozenset({"ssn"})).bind(call)
    DecisionObligations(5000, frozenset({"dob"})).bind(call)
    assert call.max_result_bytes == 1000
    assert call.redact_fields == frozenset({"ssn", "dob"})
