"""Redaction inside text content that carries JSON.

MCP servers commonly return a structured result twice: as ``structuredContent`` and
serialised into ``content[].text`` (the official SDKs do so). A redact obligation that
only walks JSON keys leaves the second copy intact; this module parses text items that
are JSON objects or arrays and masks the same keys there. Text that is not JSON is
left as it is (it has no keys to match).
"""

from __future__ import annotations

import json
from typing import Any

from wardgate.core.obligations import REDACTED

__all__ = ["redact_text_content"]

_MAX_TEXT = 4 * 1024 * 1024


def _mask(value: Any, fields: frozenset[str]) -> tuple[Any, bool]:
    """A copy of ``value`` with every key in ``fields`` masked, at any depth (iterative)."""
    root: list[Any] = [value]
    changed = False
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, node = stack.pop()
        if isinstance(node, dict):
            copy: dict[str, Any] = {}
            for k, v in node.items():
                if k in fields:
                    copy[k], changed = REDACTED, True
                else:
                    copy[k] = v
            parent[key] = copy
            stack.extend((copy, k, v) for k, v in copy.items() if isinstance(v, dict | list))
        elif isinstance(node, list):
            items = list(node)
            parent[key] = items
            stack.extend((items, i, v) for i, v in enumerate(items) if isinstance(v, dict | list))
    return root[0], changed


def redact_text_content(result: dict[str, Any], fields: frozenset[str]) -> dict[str, Any] | None:
    """``result`` with JSON text items redacted, or ``None`` when nothing changed."""
    out: dict[str, Any] | None = None
    for key in ("content", "contents"):
        items = result.get(key)
        if not isinstance(items, list):
            continue
        fresh: list[Any] = []
        touched = False
        for item in items:
            text = item.get("text") if isinstance(item, dict) else None
            if isinstance(text, str) and len(text) <= _MAX_TEXT and text.lstrip()[:1] in "{[":
                try:
                    doc = json.loads(text)
                except (ValueError, RecursionError):
                    doc = None
                if isinstance(doc, dict | list):
                    masked, changed = _mask(doc, fields)
                    if changed:
                        item = {**item, "text": json.dumps(masked, indent=2)}
                        touched = True
            fresh.append(item)
        if touched:
            out = {**(out if out is not None else result), key: fresh}
    return out
