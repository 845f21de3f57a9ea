"""The call as a unit: request guards in order, replies in reverse, the end exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wardgate.core.call import LISTEN_MESSAGE, Call, Outcome
from wardgate.core.context import CallContext
from wardgate.core.obligations import REDACTED
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied, UpstreamError, UpstreamTimeout
from wardgate.guards.tool_access import ToolAccessGuard
from wardgate.telemetry.events import CallEnded, EventBus, GuardDecision
from wardgate.telemetry.sinks import MemorySink
from wardgate.wire.jsonrpc import Message

CTX = CallContext(route="r")


class Recorder:
    """A guard in every phase that writes what it saw to a shared log."""

    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        methods: frozenset[str] | None = None,
        boom: bool = False,
        fail_open: bool = False,
    ) -> None:
        self.name = name
        self.log = log
        self.methods = methods
        self.boom = boom
        self.fail_open = fail_open
        self.outcomes: list[Outcome] = []

    async def on_request(self, call: Call, message: Message) -> Message:
        self.log.append(f"req:{self.name}")
        if self.boom:
            raise RuntimeError("bug in guard")
        return message

    async def on_message(self, call: Call, message: Message) -> Message | None:
        self.log.append(f"msg:{self.name}:{message.method or message.kind}")
        return message

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        self.log.append(f"end:{self.name}")
        self.outcomes.append(outcome)


def _call(name: str, request_id: int = 1) -> Message:
    return Message(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name}},
        "request",
    )


def _result(result: dict[str, Any], request_id: int = 1) -> Message:
    return Message({"jsonrpc": "2.0", "id": request_id, "result": result}, "response")


async def _admitted(pipeline: Pipeline, message: Message) -> Call:
    call = pipeline.call(CTX, message)
    await pipeline.admit(call)
    return call


async def test_request_guards_run_in_order_replies_and_ends_in_reverse() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log), Recorder("b", log)])
    call = await _admitted(pipeline, _call("x"))
    await call.message(_result({}))
    await call.end(200)
    assert log == ["req:a", "req:b", "msg:b:response", "msg:a:response", "end:b", "end:a"]


async def test_the_end_runs_exactly_once_with_the_outcome() -> None:
    log: list[str] = []
    guard = Recorder("a", log)
    pipeline = Pipeline([guard])
    call = await _admitted(pipeline, _call("x"))
    await call.message(_result({"content": []}))
    first = await call.end(200)
    second = await call.end(500)
    assert first is second and log.count("end:a") == 1
    assert (first.status, first.http_status, first.messages) == ("ok", 200, 1)
    assert guard.outcomes == [first]


@pytest.mark.parametrize(
    ("report", "status", "code"),
    [
        (lambda c: c.failed(UpstreamError("gone")), "upstream_error", "wardgate.upstream"),
        (lambda c: c.failed(UpstreamTimeout("slow")), "timeout", "wardgate.upstream_timeout"),
        (lambda c: c.cancelled(client_gone=True), "client_gone", None),
        (lambda c: c.cancelled(client_gone=False), "cancelled", None),
    ],
)
async def test_every_way_a_call_ends_reaches_the_end_hooks(
    report: Any, status: str, code: str | None
) -> None:
    log: list[str] = []
    guard = Recorder("a", log)
    call = await _admitted(Pipeline([guard]), _call("x"))
    report(call)
    outcome = await call.end()
    assert (outcome.status, outcome.code) == (status, code)
    assert guard.outcomes == [outcome]


async def test_an_upstream_json_rpc_error_is_an_error_outcome() -> None:
    call = await _admitted(Pipeline(), _call("x"))
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "Unknown tool"}}
    await call.message(Message(error, "response"))
    assert (await call.end(200)).code == "jsonrpc:-32602"


async def test_an_exception_in_a_guard_denies_and_the_end_still_runs() -> None:
    log: list[str] = []
    sink = MemorySink()
    after = Recorder("after", log)
    pipeline = Pipeline([Recorder("broken", log, boom=True), after], events=EventBus([sink]))
    call = pipeline.call(CTX, _call("x"))
    with pytest.raises(Denied):
        await pipeline.admit(call)
    outcome = await call.end(200)
    assert log[:1] == ["req:broken"] and "req:after" not in log  # nothing after it runs
    assert (outcome.status, outcome.guard) == ("denied", "broken")
    assert after.outcomes == [outcome]  # a limiter after the denier can still settle
    (decision,) = sink.of(GuardDecision)
    assert (decision.guard, decision.allowed, decision.code) == ("broken", False, "wardgate.denied")
    (ended,) = sink.of(CallEnded)
    assert ended.status == "denied"


async def test_fail_open_is_an_explicit_choice() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("lenient", log, boom=True, fail_open=True), Recorder("after", log)]
    )
    await _admitted(pipeline, _call("x"))
    assert log == ["req:lenient", "req:after"]


async def test_a_guard_in_no_phase_is_refused_at_construction() -> None:
    class Idle:
        name = "idle"
        methods = None
        fail_open = False

    with pytest.raises(TypeError, match="idle"):
        Pipeline([Idle()])  # type: ignore[list-item]


async def test_server_requests_are_matched_on_their_own_method() -> None:
    log: list[str] = []
    sampling = Recorder("sampling", log, methods=frozenset({"sampling/createMessage"}))
    tools = Recorder("tools", log, methods=frozenset({"tools/call"}))
    call = await _admitted(Pipeline([sampling, tools]), _call("x"))
    log.clear()
    request = Message(
        {"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {}}, "request"
    )
    progress = Message({"jsonrpc": "2.0", "method": "notifications/progress"}, "notification")
    await call.message(request)
    await call.message(progress)
    await call.message(_result({}))
    assert log == [
        "msg:sampling:sampling/createMessage",  # its own method
        "msg:tools:notifications/progress",  # in-call notifications: the call's method
        "msg:tools:response",
    ]


async def test_a_standalone_stream_is_a_call_whose_messages_match_their_own_method() -> None:
    log: list[str] = []
    changed = Recorder("changed", log, methods=frozenset({"notifications/tools/list_changed"}))
    call = await _admitted(Pipeline([changed]), LISTEN_MESSAGE)
    note = Message({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}, "notification")
    await call.message(note)
    assert log == ["msg:changed:notifications/tools/list_changed"]


async def test_end_hooks_run_even_while_the_task_is_being_cancelled() -> None:
    log: list[str] = []
    finished = asyncio.Event()

    class Settler:
        name = "settler"
        methods = None
        fail_open = False

        async def on_end(self, call: Call, outcome: Outcome) -> None:
            await asyncio.sleep(0)  # real I/O would yield here too
            log.append(outcome.status)
            finished.set()

    call = await _admitted(Pipeline([Settler()]), _call("x"))
    started = asyncio.Event()

    async def client() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            call.cancelled(client_gone=True)
            await call.end()

    task = asyncio.create_task(client())
    await started.wait()
    task.cancel()
    await asyncio.wait_for(finished.wait(), 5)
    assert log == ["client_gone"]


# -- obligations ----------------------------------------------------------------------


async def test_obligations_cap_redact_and_filter_only_ever_tighten() -> None:
    call = await _admitted(
        Pipeline(), Message({"jsonrpc": "2.0", "id": 1, "method": "x"}, "request")
    )
    call.obligations.cap(10_000)
    call.obligations.cap(50_000)  # a looser cap does not lift the first
    call.obligations.redact(["password"])
    call.obligations.only(["echo", "add"])
    call.obligations.only(["echo", "delete"])  # intersect
    result = {
        "tools": [{"name": "echo"}, {"name": "add"}, {"name": "delete"}],
        "nested": [{"deep": {"password": "hunter2", "user": "bob"}}],
    }
    out = await call.message(_result(result))
    assert out is not None
    assert out.raw["result"]["tools"] == [{"name": "echo"}]
    assert out.raw["result"]["nested"] == [{"deep": {"password": REDACTED, "user": "bob"}}]
    assert result["nested"][0]["deep"]["password"] == "hunter2"  # the upstream's copy untouched
    assert call.obligations.max_result_bytes == 10_000


async def test_a_result_over_the_cap_becomes_an_error_with_the_decision_id() -> None:
    call = await _admitted(Pipeline(), _call("x"))
    call.obligations.cap(100)
    out = await call.message(_result({"content": [{"type": "text", "text": "x" * 500}]}))
    assert out is not None
    assert out.raw["error"]["data"]["code"] == "wardgate.result_too_large"
    assert out.raw["error"]["data"]["decisionId"] == CTX.decision_id
    small = await _admitted(Pipeline(), _call("x"))
    small.obligations.cap(100)
    kept = await small.message(_result({"content": []}))
    assert kept is not None and kept.raw["result"] == {"content": []}


# -- the shipped tool access guard -------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "deny", "tool", "permitted"),
    [
        (("*",), (), "anything", True),
        (("*",), ("delete_*",), "delete_everything", False),
        (("*",), ("delete_*",), "list_files", True),
        (("read_*", "list_*"), (), "read_file", True),
        (("read_*", "list_*"), (), "write_file", False),
        (("read_*",), ("read_secrets",), "read_secrets", False),  # deny wins
        (("fs__*",), (), "FS__read", False),  # case-sensitive, like tool names
    ],
)
async def test_tool_access_table(
    allow: tuple[str, ...], deny: tuple[str, ...], tool: str, permitted: bool
) -> None:
    guard = ToolAccessGuard(allow, deny)
    assert guard.permits(tool) is permitted
    pipeline = Pipeline([guard])
    call = pipeline.call(CTX, _call(tool))
    if permitted:
        await pipeline.admit(call)
        assert call.request == _call(tool)
    else:
        with pytest.raises(Denied):
            await pipeline.admit(call)


async def test_tool_access_filters_tools_list() -> None:
    listing = Message({"jsonrpc": "2.0", "method": "tools/list", "id": 1}, "request")
    call = await _admitted(Pipeline([ToolAccessGuard(("*",), ("delete_*",))]), listing)
    filtered = await call.message(
        _result({"tools": [{"name": "echo"}, {"name": "delete_all"}], "x": 1})
    )
    assert filtered is not None
    assert filtered.raw["result"] == {"tools": [{"name": "echo"}], "x": 1}


async def test_made_up_method_names_cannot_grow_the_pipeline_caches() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log, methods=frozenset({"tools/call"}))])
    for n in range(5_000):
        made_up = Message({"jsonrpc": "2.0", "id": n, "method": f"x/{n}"}, "request")
        call = await _admitted(pipeline, made_up)
        await call.message(_result({}, n))
        await call.end(200)
    assert log == []  # a guard for tools/call saw none of them
    assert max(map(len, (pipeline._request_for, pipeline._reply_for, pipeline._end_for))) <= 128
    call = await _admitted(pipeline, _call("x"))  # the real method still matches
    assert log == ["req:a"]
