"""Terminal safety on its own: strip ANSI escapes and control characters from results.

The content library's output guard does this among other things (generic upstream
errors, flood caps, injection screening) that change what a client sees of an upstream's
errors. This guard is the part that is safe to run by default: it touches only text
content of final results, and only where there is something to strip.
"""

from __future__ import annotations

from wardgate.content.output import strip_controls
from wardgate.core.call import Call
from wardgate.wire.jsonrpc import Message

__all__ = ["ControlsGuard"]


class ControlsGuard:
    """Removes ANSI sequences and C0/C1 controls (but tab, newline, return) from the text
    items of ``tools/call``, ``prompts/get`` and ``resources/read`` results."""

    name = "controls"
    methods: frozenset[str] | None = frozenset({"tools/call", "prompts/get", "resources/read"})
    fail_open = False

    async def on_message(self, call: Call, message: Message) -> Message | None:
        result = message.raw.get("result")
        if message.kind != "response" or not isinstance(result, dict):
            return message
        cleaned = strip_controls(result)
        if cleaned is result:
            return message
        return Message({**message.raw, "result": cleaned}, "response")
