"""Guards run in order, responses in reverse, and a broken guard denies (fail closed)."""

from __future__ import annotations

import pytest

from wardgate.core.pipeline import CallContext, Pipeline
from wardgate.errors import Denied
from wardgate.guards.tool_access import ToolAccessGuard
from wardgate.wire.jsonrpc import Message

CTX = CallContext(route="r")


class Recorder:
    methods: frozenset[str] | None = None

    def __init__(
        self, name: str, log: list[str], *, boom: bool = False, fail_open: bool = False
    ) -> None:
        self.name = name
        self.log = log
        self.boom = boom
        self.fail_open = fail_open

    async def check_request(self, ctx: CallContext, message: Message) -> Message:
        self.log.append(f"req:{self.name}")
        if self.boom:
            raise RuntimeError("bug in guard")
        return message

    async def check_response(
        self, ctx: CallContext, request: Message | None, message: Message
    ) -> Message:
        self.log.append(f"resp:{self.name}")
        return message


def _call(name: str) -> Message:
    return Message(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}, "request"
    )


async def test_request_guards_run_in_order_and_response_guards_in_reverse() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("a", log), Recorder("b", log)])
    request = _call("x")
    await pipeline.check_request(CTX, request)
    await pipeline.check_response(
        CTX, request, Message({"jsonrpc": "2.0", "id": 1, "result": {}}, "response")
    )
    assert log == ["req:a", "req:b", "resp:b", "resp:a"]


async def test_an_exception_in_a_guard_denies() -> None:
    log: list[str] = []
    pipeline = Pipeline([Recorder("broken", log, boom=True), Recorder("after", log)])
    with pytest.raises(Denied):
        await pipeline.check_request(CTX, _call("x"))
    assert log == ["req:broken"]  # nothing after a failed guard runs


async def test_fail_open_is_an_explicit_choice() -> None:
    log: list[str] = []
    pipeline = Pipeline(
        [Recorder("lenient", log, boom=True, fail_open=True), Recorder("after", log)]
    )
    await pipeline.check_request(CTX, _call("x"))
    assert log == ["req:lenient", "req:after"]


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
    if permitted:
        assert await guard.check_request(CTX, _call(tool)) == _call(tool)
    else:
        with pytest.raises(Denied):
            await guard.check_request(CTX, _call(tool))


async def test_tool_access_filters_tools_list() -> None:
    guard = ToolAccessGuard(("*",), ("delete_*",))
    listing = Message({"jsonrpc": "2.0", "method": "tools/list", "id": 1}, "request")
    response = Message(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"tools": [{"name": "echo"}, {"name": "delete_all"}], "x": 1},
        },
        "response",
    )
    filtered = await guard.check_response(CTX, listing, response)
    assert filtered.raw["result"] == {"tools": [{"name": "echo"}], "x": 1}
