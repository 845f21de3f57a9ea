"""The policy guard on a real Pipeline: calls decided, lists filtered, hidden == absent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.policy.conftest import Sink, begin, example_engine
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied, UnknownTarget, WardgateError
from wardgate.identity.principal import Principal
from wardgate.policy.decision import PolicyDecision
from wardgate.policy.decision_log import PolicyDecided
from wardgate.policy.guard import PolicyGuard, federated_names
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder, InputConfig
from wardgate.telemetry.events import EventBus
from wardgate.wire.jsonrpc import Message

# Monday 2026-11-30 15:00 UTC is 10:00 in New York (acme's office hours).
OFFICE = datetime(2026, 11, 30, 15, 0, tzinfo=UTC).timestamp()
NIGHT = datetime(2026, 12, 1, 4, 0, tzinfo=UTC).timestamp()  # 23:00 in New York

ALICE = Principal("alice@acme", "jwt", tenant="acme", claims={"groups": ["staff"]})
EDITOR = Principal(
    "erin@acme", "jwt", tenant="acme", claims={"groups": ["editors"], "amr": ["pwd", "otp"]}
)
BOT = Principal(
    "spiffe://acme/agent/crm-bot", "spiffe", tenant="acme", scopes=frozenset({"crm.read"})
)
CONFIG = InputConfig(
    tool_attributes={"read_record": {"tenant": "tenant", "api_key": "api_key"}},
    tenant_time_zones={"acme": "America/New_York", "globex": "Europe/Berlin"},
    risk_table=[("198.51.100.0/24", 60)],
)


def _setup(kind: str = "cedar") -> tuple[Pipeline, Sink, PolicyHolder]:
    sink = Sink()
    holder = PolicyHolder(example_engine(kind, revision="rev-7"))
    pipeline = Pipeline([PolicyGuard(holder, InputBuilder(CONFIG))], events=EventBus([sink]))
    return pipeline, sink, holder


def _ctx(
    principal: Principal, target: str | None = None, *, at: float = OFFICE, addr: str = "10.0.0.5"
) -> CallContext:
    return CallContext(
        route="crm",
        principal=principal,
        client_addr=addr,
        received_at=at,
        upstream="crm",
        target=target,
    )


def _tool(name: str, **arguments: Any) -> Message:
    raw = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return Message(raw, "request")


def _request(method: str) -> Message:
    return Message({"jsonrpc": "2.0", "id": 2, "method": method, "params": {}}, "request")


def _response(result: dict[str, Any]) -> Message:
    return Message({"jsonrpc": "2.0", "id": 1, "result": result}, "response")


@pytest.mark.parametrize("kind", ["cedar", "rego"])
async def test_an_acme_user_cannot_read_globex_records_through_the_shared_crm(kind: str) -> None:
    pipeline, sink, _ = _setup(kind)
    # The legitimate call beside the attack: her own tenant's record.
    own = await begin(pipeline, _ctx(ALICE, "read_record"), _tool("read_record", tenant="acme"))
    await own.end(200)
    with pytest.raises(Denied) as refused:
        await begin(
            pipeline, _ctx(ALICE, "read_record"), _tool("read_record", tenant="globex", id="g-1")
        )
    # The tool is one she may see: a plain denial, not "unknown tool".
    assert refused.value.code == "wardgate.denied"
    allowed, denied = sink.of("policy.decision")
    assert isinstance(allowed, PolicyDecided) and isinstance(denied, PolicyDecided)
    assert allowed.allowed and not denied.allowed
    assert denied.reasons == ("tenant-isolation",)
    assert denied.revision == "rev-7" and denied.engine == kind
    assert denied.input["resource"]["tenant"] == "globex"
    assert denied.latency_ms >= 0


async def test_a_hidden_tool_gets_the_same_answer_as_an_absent_one() -> None:
    pipeline, _, _ = _setup()
    errors: list[WardgateError] = []
    for name in ("update_record", "no_such_tool"):  # hidden from staff / not there at all
        with pytest.raises(UnknownTarget) as info:
            await begin(pipeline, _ctx(ALICE, name), _tool(name))
        errors.append(info.value)
    assert {(e.code, e.jsonrpc_code, e.http_status, e.public_message) for e in errors} == {
        ("wardgate.unknown_target", -32602, 200, "Unknown tool, prompt or resource")
    }
    # An editor sees update_record: for her the same tool is allowed.
    editor = await begin(pipeline, _ctx(EDITOR, "update_record"), _tool("update_record"))
    await editor.end(200)


async def test_after_hours_hides_the_write_tools() -> None:
    pipeline, _, _ = _setup()
    with pytest.raises(UnknownTarget):
        await begin(pipeline, _ctx(EDITOR, "update_record", at=NIGHT), _tool("update_record"))
    read = await begin(pipeline, _ctx(EDITOR, "read_record", at=NIGHT), _tool("read_record"))
    await read.end(200)


async def test_an_allow_with_obligations_caps_and_redacts_the_reply() -> None:
    pipeline, _, _ = _setup()
    call = await begin(pipeline, _ctx(BOT, "read_record"), _tool("read_record", tenant="acme"))
    assert call.obligations.max_result_bytes == 65536
    assert call.obligations.redact_fields == frozenset({"ssn", "date_of_birth"})
    out = await call.message(_response({"structuredContent": {"name": "Ann", "ssn": "078-05"}}))
    assert out is not None
    assert out.raw["result"]["structuredContent"] == {"name": "Ann", "ssn": "[REDACTED]"}
    await call.end(200)


async def test_tools_list_shows_only_what_the_caller_may_use_in_one_batch() -> None:
    pipeline, sink, holder = _setup()
    calls: list[int] = []
    engine = holder.engine
    real = engine.evaluate_many

    async def counting(inputs: Any) -> Any:
        calls.append(len(inputs))
        return await real(inputs)

    engine.evaluate_many = counting  # type: ignore[method-assign]
    tools = [
        {"name": n} for n in ("search_records", "read_record", "update_record", "delete_record")
    ]
    tools += [{"name": f"extra_{i}"} for i in range(196)]
    call = await begin(pipeline, _ctx(ALICE), _request("tools/list"))
    out = await call.message(_response({"tools": tools, "nextCursor": "c2"}))
    await call.end(200)
    assert out is not None
    assert [t["name"] for t in out.raw["result"]["tools"]] == ["search_records", "read_record"]
    assert out.raw["result"]["nextCursor"] == "c2"  # everything else relayed unchanged
    assert calls == [200]
    listing = [e for e in sink.of("policy.decision") if isinstance(e, PolicyDecided) and e.items]
    assert listing[0].items == 200 and listing[0].hidden == 198


async def test_prompts_and_resources_lists_are_filtered_too() -> None:
    pipeline, _, _ = _setup()
    call = await begin(pipeline, _ctx(ALICE), _request("prompts/list"))
    out = await call.message(
        _response({"prompts": [{"name": "summarize_account"}, {"name": "exfiltrate"}]})
    )
    assert out is not None and out.raw["result"]["prompts"] == [{"name": "summarize_account"}]
    call = await begin(pipeline, _ctx(ALICE), _request("resources/list"))
    out = await call.message(_response({"resources": [{"uri": "crm://acme/1"}, {"bad": 1}]}))
    assert out is not None and out.raw["result"]["resources"] == []


async def test_with_no_policy_nothing_is_allowed() -> None:
    sink = Sink()
    pipeline = Pipeline([PolicyGuard(PolicyHolder())], events=EventBus([sink]))
    with pytest.raises(Denied):
        await begin(pipeline, _ctx(ALICE), _request("initialize"))
    with pytest.raises(UnknownTarget):
        await begin(pipeline, _ctx(ALICE, "read_record"), _tool("read_record"))
    (event, *_) = sink.of("policy.decision")
    assert isinstance(event, PolicyDecided) and event.reasons == ("no-policy",)


async def test_a_risky_network_cannot_write_but_can_still_read() -> None:
    pipeline, _, _ = _setup()
    risky = "198.51.100.7"
    with pytest.raises(UnknownTarget):
        await begin(pipeline, _ctx(EDITOR, "update_record", addr=risky), _tool("update_record"))
    call = await begin(pipeline, _ctx(EDITOR, "read_record", addr=risky), _tool("read_record"))
    await call.end(200)


async def test_the_decision_log_redacts_secrets_in_the_input() -> None:
    pipeline, sink, _ = _setup()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    with pytest.raises(Denied):
        await begin(
            pipeline,
            _ctx(ALICE, "read_record"),
            _tool("read_record", tenant="globex", api_key=token),
        )
    (event,) = sink.of("policy.decision")
    assert isinstance(event, PolicyDecided)
    assert event.input["resource"]["attributes"]["api_key"] == "[REDACTED]"
    assert token not in repr(event)


async def test_notifications_and_client_answers_pass_without_a_decision() -> None:
    pipeline, sink, _ = _setup()
    note = Message({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notification")
    sampled = Message({"jsonrpc": "2.0", "id": "s-1", "result": {"content": []}}, "response")
    for message in (note, sampled):
        call = await begin(pipeline, _ctx(ALICE), message)
        await call.end(202)
    assert sink.of("policy.decision") == []


async def test_a_federated_list_is_decided_on_unprefixed_names_and_their_upstreams() -> None:
    sink = Sink()
    holder = PolicyHolder(example_engine("cedar"))
    names = federated_names([("crm", "crm"), ("docs", "docs")])
    pipeline = Pipeline(
        [PolicyGuard(holder, InputBuilder(CONFIG), names=names)], events=EventBus([sink])
    )
    ctx = CallContext(route="all", principal=EDITOR, received_at=OFFICE, client_addr="10.0.0.5")
    call = await begin(pipeline, ctx, _request("tools/list"))
    listed = ["crm__read_record", "crm__update_record", "docs__update_record", "docs__search_docs"]
    out = await call.message(_response({"tools": [{"name": n} for n in listed]}))
    assert out is not None
    # update_record is a write tool only where the crm upstream serves it.
    assert [t["name"] for t in out.raw["result"]["tools"]] == [
        "crm__read_record",
        "crm__update_record",
        "docs__search_docs",
    ]


async def test_the_demo_policy_says_what_it_allows() -> None:
    from wardgate.identity.principal import ANONYMOUS
    from wardgate.policy.demo import demo_engine

    pipeline = Pipeline([PolicyGuard(PolicyHolder(demo_engine()))])
    ctx = CallContext(route="demo", principal=ANONYMOUS, received_at=OFFICE)
    for name in ("echo", "add", "utc_now"):
        call = await begin(pipeline, CallContext(route="demo", target=name), _tool(name))
        await call.end(200)
    with pytest.raises(UnknownTarget):
        await begin(
            pipeline,
            CallContext(route="demo", target="delete_everything"),
            _tool("delete_everything"),
        )
    call = await begin(pipeline, ctx, _request("tools/list"))
    listed = [{"name": n} for n in ("echo", "add", "utc_now", "delete_everything")]
    out = await call.message(_response({"tools": listed}))
    assert out is not None and [t["name"] for t in out.raw["result"]["tools"]] == [
        "echo",
        "add",
        "utc_now",
    ]
    with pytest.raises(Denied):  # another route is not the demo's
        await begin(pipeline, CallContext(route="other"), _request("initialize"))


async def test_an_engine_failure_denies_with_an_event() -> None:
    class Broken:
        name = "broken"
        revision = "b1"

        async def evaluate(self, policy_input: Any) -> Any:
            raise RuntimeError("engine bug")

        async def evaluate_many(self, inputs: Any) -> Any:
            raise RuntimeError("engine bug")

    sink = Sink()
    pipeline = Pipeline([PolicyGuard(PolicyHolder(Broken()))], events=EventBus([sink]))
    with pytest.raises(Denied) as info:  # the pipeline fails the guard closed
        await begin(pipeline, _ctx(ALICE), _request("initialize"))
    assert info.value.code == "wardgate.denied"
    assert [e.kind for e in sink.events] == ["guard.decision", "call.ended"]


async def test_a_cedar_failure_is_a_deny_whose_event_carries_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cedarpy

    pipeline, sink, _ = _setup()

    def boom(*a: object, **k: object) -> object:
        raise RuntimeError("cedar exploded")

    monkeypatch.setattr(cedarpy, "is_authorized_batch", boom)
    with pytest.raises(Denied):
        await begin(pipeline, _ctx(ALICE), _request("initialize"))
    (event,) = sink.of("policy.decision")
    assert isinstance(event, PolicyDecided)
    assert event.reasons == ("engine-failure",) and event.error is not None
    assert "cedar exploded" in event.error


async def test_a_repeated_list_is_remembered_per_engine_and_never_after_a_failure() -> None:
    holder = PolicyHolder(example_engine("cedar", revision="r1"))
    pipeline = Pipeline([PolicyGuard(holder, InputBuilder(CONFIG))])
    asked: list[str] = []

    def counting(engine: Any) -> Any:
        real = engine.evaluate_many

        async def evaluate_many(inputs: Any) -> Any:
            asked.append(engine.revision)
            return await real(inputs)

        engine.evaluate_many = evaluate_many
        return engine

    counting(holder.engine)
    tools = {"tools": [{"name": "read_record"}, {"name": "update_record"}]}

    async def listed() -> list[str]:
        call = await begin(pipeline, _ctx(ALICE), _request("tools/list"))
        out = await call.message(_response(tools))
        await call.end(200)
        assert out is not None
        return [t["name"] for t in out.raw["result"]["tools"]]

    assert await listed() == ["read_record"]
    assert await listed() == ["read_record"]
    assert asked == ["r1"]
    # A new policy: decided afresh.
    holder.swap(counting(example_engine("rego", revision="r2")))
    assert await listed() == ["read_record"]
    assert asked == ["r1", "r2"]

    class Failing:
        name, revision = "failing", "r3"

        async def evaluate(self, policy_input: Any) -> PolicyDecision:
            return PolicyDecision(True, ("session",), revision="r3", engine="failing")

        async def evaluate_many(self, inputs: Any) -> list[PolicyDecision]:
            asked.append("r3")
            return [PolicyDecision.deny("engine-failure", error="down") for _ in inputs]

    holder.swap(Failing())
    assert await listed() == [] and await listed() == []
    assert asked == ["r1", "r2", "r3", "r3"]  # a failure is asked again, never remembered


async def test_a_standalone_stream_is_decided_like_any_call() -> None:
    from wardgate.core.call import LISTEN_MESSAGE

    pipeline, sink, _ = _setup()
    call = await begin(pipeline, _ctx(ALICE), LISTEN_MESSAGE)
    await call.end(200)
    drifter = Principal("drifter", "jwt")  # no tenant: the example set lets it do nothing
    with pytest.raises(Denied):
        await begin(pipeline, _ctx(drifter), LISTEN_MESSAGE)
    decided = [e for e in sink.of("policy.decision") if isinstance(e, PolicyDecided)]
    assert [(e.method, e.allowed) for e in decided] == [
        ("wardgate/listen", True),
        ("wardgate/listen", False),
    ]
