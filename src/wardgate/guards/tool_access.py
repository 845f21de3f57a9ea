"""Tool allow/deny lists per route: a denied tool can neither be called nor seen."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from wardgate.core.call import Call
from wardgate.errors import Denied
from wardgate.wire.jsonrpc import Message

__all__ = ["ToolAccessGuard"]


class ToolAccessGuard:
    """Allow the tools matching ``allow`` (globs) unless they match ``deny``."""

    name = "tool_access"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    response_methods: frozenset[str] | None = frozenset({"tools/list"})
    fail_open = False

    def __init__(self, allow: Sequence[str] = ("*",), deny: Sequence[str] = ()) -> None:
        self._allow = tuple(allow)
        self._deny = tuple(deny)
        self._open = self._allow == ("*",) and not self._deny

    def permits(self, tool: str) -> bool:
        if self._open:
            return True
        if any(fnmatchcase(tool, pattern) for pattern in self._deny):
            return False
        return any(fnmatchcase(tool, pattern) for pattern in self._allow)

    async def on_request(self, call: Call, message: Message) -> Message:
        if message.method == "tools/call":
            name = message.params.get("name")
            if not isinstance(name, str) or not self.permits(name):
                raise Denied(f"tool {name!r} is not allowed on route {call.ctx.route}")
        return message

    async def on_message(self, call: Call, message: Message) -> Message:
        if self._open or call.method != "tools/list":
            return message
        result = message.raw.get("result")
        if message.kind != "response" or not isinstance(result, dict):
            return message
        tools = result.get("tools")
        if not isinstance(tools, list):
            return message
        kept = [t for t in tools if isinstance(t, dict) and self.permits(str(t.get("name", "")))]
        if len(kept) == len(tools):
            return message
        return Message({**message.raw, "result": {**result, "tools": kept}}, "response")
