"""Hard limits on a parsed JSON value, whatever its schema says, checked in one pass.

The same pass collects every string with its path, so the Unicode and injection checks
that follow need not walk the value again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wardgate.content.generic_errors import ArgumentsTooLarge, json_pointer

__all__ = ["Limits", "check_limits"]

#: (path, string): ``path`` ends with the key when the string is an object key.
Located = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-route or per-tool limits (config ``[content.limits]``)."""

    max_string_bytes: int = 8 * 1024
    max_array_items: int = 1000
    max_depth: int = 15
    max_total_bytes: int = 256 * 1024
    max_object_keys: int = 1000


def _size(text: str) -> int:
    # UTF-8 length without encoding: ASCII is the common case and O(1) to detect.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def check_limits(value: Any, limits: Limits) -> list[Located]:
    """Check ``value`` against ``limits``; return its strings with their paths (keys too,
    unless short and ASCII).

    ``total`` counts string bytes plus a few bytes per scalar and container, a close
    lower bound of the value's JSON size that needs no serialisation.

    Raises:
        ArgumentsTooLarge: a limit is exceeded; ``path`` names where.
    """
    strings: list[Located] = []
    total = 0
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limits.max_depth:
            raise ArgumentsTooLarge("nesting too deep", path=json_pointer(path))
        if isinstance(node, str):
            size = _size(node)
            if size > limits.max_string_bytes:
                raise ArgumentsTooLarge(f"string of {size} bytes", path=json_pointer(path))
            total += size + 2
            strings.append((path, node))
        elif isinstance(node, dict):
            if len(node) > limits.max_object_keys:
                raise ArgumentsTooLarge(f"object of {len(node)} keys", path=json_pointer(path))
            total += 2
            for key, item in node.items():
                size = _size(key)
                if size > limits.max_string_bytes:
                    raise ArgumentsTooLarge("key too long", path=json_pointer(path))
                total += size + 4
                child = (*path, key)
                if size > 32 or not key.isascii():
                    # Short ASCII keys can carry neither tells nor a sentence to score.
                    strings.append((child, key))
                stack.append((item, child))
        elif isinstance(node, list):
            if len(node) > limits.max_array_items:
                raise ArgumentsTooLarge(f"array of {len(node)} items", path=json_pointer(path))
            total += 2 + len(node)
            stack.extend((item, (*path, i)) for i, item in enumerate(node))
        else:
            total += 8
        if total > limits.max_total_bytes:
            raise ArgumentsTooLarge(f"over {limits.max_total_bytes} bytes", path=json_pointer(path))
    return strings
