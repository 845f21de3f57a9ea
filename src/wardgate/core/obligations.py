"""Obligations: what a request-phase decision binds the reply phase of the same call to.

A guard (a policy engine's answer, a quota) may allow a call on conditions: cap the
result at N bytes, redact these fields, show only these list items. The conditions
only ever tighten: a second guard can lower a cap or add fields, never lift them. The
call applies them to the final response after the response guards have run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from wardgate.errors import WardgateError
from wardgate.wire.jsonrpc import Message, wardgate_error_response

__all__ = ["REDACTED", "Obligations", "ResultTooLarge", "redact_text_content"]

REDACTED = "[REDACTED]"

#: List results and the field that names their items.
_LIST_ITEMS = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "name"}


class ResultTooLarge(WardgateError):
    """The result is larger than the call may return (an obligation's cap)."""

    code = "wardgate.result_too_large"
    jsonrpc_code = -32603
    http_status = 200
    public_message = "Result too large"


@dataclass(slots=True)
class Obligations:
    """The conditions on one call's reply; empty (falsy) when there are none."""

    max_result_bytes: int | None = None
    redact_fields: frozenset[str] = frozenset()
    #: Names (or URIs) a list result may show; ``None``: no filter.
    visible: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(
            self.max_result_bytes is not None or self.redact_fields or self.visible is not None
        )

    def cap(self, max_bytes: int) -> None:
        """Cap the result; a lower cap wins."""
        if self.max_result_bytes is None or max_bytes < self.max_result_bytes:
            self.max_result_bytes = max_bytes

    def redact(self, names: Iterable[str]) -> None:
        self.redact_fields = self.redact_fields | frozenset(names)

    def only(self, names: Iterable[str]) -> None:
        """Show only these list items; several calls intersect."""
        allowed = frozenset(names)
        self.visible = allowed if self.visible is None else self.visible & allowed

    def apply(self, message: Message, decision_id: str) -> Message:
        """The final response with every obligation applied (a new message if changed)."""
        result = message.raw.get("result")
        if not isinstance(result, dict):
            return message
        changed = result
        if self.visible is not None:
            changed = _filter_lists(changed, self.visible)
        if self.redact_fields:
            changed = _redact(changed, self.redact_fields)
            changed = redact_text_content(changed, self.redact_fields) or changed
        if changed is not result:
            message = Message({**message.raw, "result": changed}, "response")
        if self.max_result_bytes is not None and (
            len(orjson.dumps(changed)) > self.max_result_bytes
        ):
            error = ResultTooLarge(f"result over {self.max_result_bytes} bytes")
            return Message(
                wardgate_error_response(message.id, error, decision_id),
                "response",
            )
        return message


def _filter_lists(result: dict[str, Any], visible: frozenset[str]) -> dict[str, Any]:
    out = result
    for key, name_field in _LIST_ITEMS.items():
        items = result.get(key)
        if not isinstance(items, list):
            continue
        kept = [i for i in items if isinstance(i, dict) and i.get(name_field) in visible]
        if len(kept) != len(items):
            out = {**out, key: kept}
    return out


def _redact(value: Any, names: frozenset[str]) -> Any:
    """Replace the values of every key in ``names``, at any depth (iteratively)."""
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    # Copy on the way down so the upstream's objects are never mutated.
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            copy = {k: (REDACTED if k in names else v) for k, v in node.items()}
            parent[key] = copy
            stack.extend((copy, k, v) for k, v in copy.items() if isinstance(v, dict | list))
        elif isinstance(node, list):
            items = list(node)
            parent[key] = items
            stack.extend((items, i, v) for i, v in enumerate(items) if isinstance(v, dict | list))
    return root[0]


#: Text items longer than this are not parsed as JSON (they are left as they are).
_MAX_JSON_TEXT = 4 * 1024 * 1024


def redact_text_content(result: dict[str, Any], names: frozenset[str]) -> dict[str, Any] | None:
    """``result`` with the keys in ``names`` masked inside text items that hold JSON, or
    ``None`` when nothing changed.

    MCP servers (the official SDKs among them) return a structured result twice: as
    ``structuredContent`` and serialised into ``content[].text``. Walking JSON keys
    misses the second copy; this parses text items that are JSON objects or arrays and
    masks the same keys there. Text that is not JSON has no keys and is left as it is.
    """
    out: dict[str, Any] | None = None
    for key in ("content", "contents"):
        items = result.get(key)
        if not isinstance(items, list):
            continue
        fresh: list[Any] = []
        touched = False
        for item in items:
            text = item.get("text") if isinstance(item, dict) else None
            if isinstance(text, str) and len(text) <= _MAX_JSON_TEXT and text.lstrip()[:1] in "{[":
                try:
                    doc = json.loads(text)
                except (ValueError, RecursionError):
                    doc = None
                if isinstance(doc, dict | list):
                    masked = _redact(doc, names)
                    if masked != doc:
                        item = {**item, "text": json.dumps(masked, indent=2)}
                        touched = True
            fresh.append(item)
        if touched:
            out = {**(out if out is not None else result), key: fresh}
    return out
