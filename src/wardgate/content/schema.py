"""Closed input schemas, compiled once per tool version.

:func:`close_schema` copies a tool's ``inputSchema`` and closes every object in it
(``additionalProperties: false``), so a client cannot smuggle fields the tool never
declared. Where an object is composed (``allOf``/``anyOf``/``oneOf``) its parts cannot
each be closed without rejecting each other's fields: the composing object gets
``unevaluatedProperties: false`` instead (JSON Schema 2020-12, MCP's default dialect).

:class:`SchemaCache` compiles with ``jsonschema-rs``, keyed by a hash of the schema (a
new tool version is a new key). Remote ``$ref`` are never fetched. A schema that does not
compile holds the tool back (:class:`ToolHeld`) rather than passing calls unchecked.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any

import orjson

from wardgate.content.generic_errors import ArgumentsInvalid, ToolHeld, json_pointer
from wardgate.errors import ConfigError

__all__ = ["CompiledSchema", "SchemaCache", "close_schema", "plain_text_paths"]

log = logging.getLogger("wardgate.content.schema")

_CHILD_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_CHILD_ONE = ("additionalProperties", "items", "not", "if", "then", "else", "contains")
_COMPOSE = ("allOf", "anyOf", "oneOf")
#: Property names that declare code, commands or queries: never "plain text".
_CODE_NAMES = frozenset(
    {"code", "command", "cmd", "script", "shell", "query", "sql", "expression", "regex",
     "pattern", "source", "snippet", "program", "args", "argv", "patch", "diff"}
)  # fmt: skip


def _is_object_schema(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def close_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A closed copy of ``schema`` (see the module docstring); ``schema`` is not changed."""
    root: dict[str, Any] = orjson.loads(orjson.dumps(schema))
    stack: list[tuple[dict[str, Any], bool]] = [(root, True)]
    while stack:
        node, closable = stack.pop()
        composed = any(isinstance(node.get(k), list) for k in _COMPOSE)
        if (closable and _is_object_schema(node)) or composed:
            open_keys = ("additionalProperties", "unevaluatedProperties", "patternProperties")
            if not any(k in node for k in open_keys):
                node["unevaluatedProperties" if composed else "additionalProperties"] = False
        for key in _CHILD_MAPS:
            children = node.get(key)
            if isinstance(children, dict):
                stack.extend((c, True) for c in children.values() if isinstance(c, dict))
        for key in _CHILD_ONE:
            child = node.get(key)
            if isinstance(child, dict):
                stack.append((child, key not in ("not", "if")))
        for key in ("prefixItems", "items"):
            if isinstance(node.get(key), list):
                stack.extend((c, True) for c in node[key] if isinstance(c, dict))
        for key in _COMPOSE:
            if isinstance(node.get(key), list):
                # Parts of a composition stay open; the composing object is closed above.
                stack.extend((c, False) for c in node[key] if isinstance(c, dict))
    return root


def plain_text_paths(schema: dict[str, Any]) -> frozenset[tuple[str, ...]]:
    """Paths (``*`` for array items) of string fields declared as plain text: no
    ``format``, ``pattern``, ``enum`` or media type, and not named like code."""
    found: set[tuple[str, ...]] = set()
    stack: list[tuple[dict[str, Any], tuple[str, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > 32:
            continue
        constrained = any(
            k in node for k in ("format", "pattern", "enum", "const", "contentMediaType")
        )
        named_as_code = bool(path) and path[-1].lower() in _CODE_NAMES
        if node.get("type") == "string" and not constrained and not named_as_code:
            found.add(path)
        for name, child in (node.get("properties") or {}).items():
            if isinstance(child, dict):
                stack.append((child, (*path, name)))
        items = node.get("items")
        if isinstance(items, dict):
            stack.append((items, (*path, "*")))
    return frozenset(found)


class CompiledSchema:
    """One tool version's compiled, closed schema."""

    def __init__(self, validator: Any, plain: frozenset[tuple[str, ...]]) -> None:
        self._validator = validator
        self.plain = plain

    def validate(self, arguments: Any) -> None:
        """Check ``arguments``.

        Raises:
            ArgumentsInvalid: with the JSON pointer of the first offending field.
        """
        if self._validator.is_valid(arguments):
            return
        error = next(iter(self._validator.iter_errors(arguments)))
        path = json_pointer(list(error.instance_path))
        raise ArgumentsInvalid(f"schema: {error.message}", path=path)

    def is_plain(self, path: tuple[str | int, ...]) -> bool:
        return tuple("*" if isinstance(p, int) else p for p in path) in self.plain


def _no_remote(uri: str) -> Any:
    raise ValueError(f"remote $ref not allowed: {uri}")


class SchemaCache:
    """Compiled schemas by hash of (schema, closed); bounded, least recently used out.

    Raises:
        ConfigError: ``jsonschema-rs`` is not installed.
    """

    def __init__(self, *, max_entries: int = 1024) -> None:
        try:
            import jsonschema_rs
        except ImportError as exc:
            raise ConfigError(
                "input validation needs jsonschema-rs: pip install 'wardgate[content]'"
            ) from exc
        self._rs = jsonschema_rs
        self._max = max_entries
        self._entries: OrderedDict[str, CompiledSchema | str] = OrderedDict()

    @staticmethod
    def key(schema: dict[str, Any], closed: bool) -> str:
        body = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(body + (b"\x01" if closed else b"\x00")).hexdigest()

    def compile(self, tool: str, schema: Any, *, closed: bool = True) -> CompiledSchema:
        """The compiled schema for this tool version.

        Raises:
            ToolHeld: the schema is not an object or does not compile (also cached).
        """
        if not isinstance(schema, dict):
            raise ToolHeld(f"tool {tool!r}: inputSchema is not an object")
        key = self.key(schema, closed)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._build(tool, schema, closed)
            self._entries[key] = entry
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, str):
            raise ToolHeld(f"tool {tool!r}: input schema does not compile: {entry}")
        return entry

    def _build(self, tool: str, schema: dict[str, Any], closed: bool) -> CompiledSchema | str:
        target = close_schema(schema) if closed else schema
        try:
            validator = self._rs.validator_for(
                target, validate_formats=True, retriever=_no_remote, mask="[value]"
            )
        except Exception as exc:  # jsonschema-rs raises ValidationError or ValueError
            reason = str(exc).splitlines()[0][:200]
            log.warning("tool %s held: its input schema does not compile: %s", tool, reason)
            return reason
        return CompiledSchema(validator, plain_text_paths(schema))
