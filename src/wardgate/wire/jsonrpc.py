"""JSON-RPC 2.0 messages as Wardgate sees them: parsed once, classified, never re-shaped.

A message stays the plain ``dict`` that came off the wire so that unknown fields and
``_meta`` travel unchanged; :class:`Message` only adds the classification every guard
needs (kind, method, id, tool name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wardgate.errors import ParseError, ProtocolError, WardgateError

__all__ = [
    "DEFAULT_MAX_JSON_DEPTH",
    "MAX_JSON_DEPTH_CEILING",
    "JsonObject",
    "Message",
    "MessageKind",
    "RequestId",
    "dumps",
    "error_response",
    "loads_bounded",
    "parse_message",
    "wardgate_error_response",
]

JsonObject = dict[str, Any]
RequestId = str | int
MessageKind = Literal["request", "notification", "response"]

dumps = orjson.dumps

#: Deepest nesting of arrays and objects accepted when nothing else is configured.
DEFAULT_MAX_JSON_DEPTH = 64
#: orjson serialises at most 254 levels: a deeper message could be read but not relayed.
MAX_JSON_DEPTH_CEILING = 254


@dataclass(frozen=True, slots=True)
class Message:
    """One JSON-RPC message, classified.

    ``raw`` is the decoded object exactly as received; guards that rewrite a message
    build a new ``Message`` rather than mutating it.
    """

    raw: JsonObject
    kind: MessageKind

    @property
    def method(self) -> str | None:
        method = self.raw.get("method")
        return method if isinstance(method, str) else None

    @property
    def id(self) -> RequestId | None:
        return self.raw.get("id")

    @property
    def params(self) -> JsonObject:
        params = self.raw.get("params")
        return params if isinstance(params, dict) else {}

    @property
    def target_name(self) -> str | None:
        """``params.name`` (tools, prompts) or ``params.uri`` (resources)."""
        params = self.params
        name = params.get("name", params.get("uri"))
        return name if isinstance(name, str) else None

    @property
    def is_error(self) -> bool:
        return self.kind == "response" and "error" in self.raw

    @classmethod
    def from_raw(cls, raw: Any) -> Message:
        """Classify a decoded JSON value.

        Raises:
            ProtocolError: ``raw`` is not a single JSON-RPC 2.0 message.
        """
        if isinstance(raw, list):
            raise ProtocolError("JSON-RPC batches are not supported")
        if not isinstance(raw, dict):
            raise ProtocolError("a JSON-RPC message must be an object")
        if raw.get("jsonrpc") != "2.0":
            raise ProtocolError("jsonrpc must be '2.0'")
        has_id = "id" in raw
        if has_id and not _valid_id(raw["id"]):
            raise ProtocolError("id must be a string or an integer")
        if "method" in raw:
            if not isinstance(raw["method"], str) or not raw["method"]:
                raise ProtocolError("method must be a non-empty string")
            if "params" in raw and not isinstance(raw["params"], dict):
                raise ProtocolError("params must be an object")
            return cls(raw, "request" if has_id else "notification")
        if "result" in raw or "error" in raw:
            if ("result" in raw) == ("error" in raw):
                raise ProtocolError("a response has exactly one of result and error")
            if "error" in raw and not _valid_error(raw["error"]):
                raise ProtocolError("error must carry an integer code and a message")
            if not has_id and "error" not in raw:
                raise ProtocolError("a result response must carry an id")
            return cls(raw, "response")
        raise ProtocolError("not a request, notification or response")


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _valid_error(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("code"), int)
        and isinstance(value.get("message"), str)
    )


def _too_deep(value: Any, max_depth: int) -> bool:
    # Level by level, iteratively: no recursion (a deep value cannot exhaust the
    # stack) and no per-node tuples; exact ``type`` tests, as orjson builds only
    # plain dicts and lists.
    level: list[Any] = [value]
    depth = 1
    while level:
        if depth > max_depth:
            return True
        below: list[Any] = []
        add = below.append
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    add(child)
        level = below
        depth += 1
    return False


def loads_bounded(data: bytes | str, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Decode JSON whose arrays and objects nest at most ``max_depth`` deep.

    Counting brackets (in C) first means that a value which cannot be that deep, the
    usual case, is never walked.

    Raises:
        ParseError: the data is not JSON.
        ProtocolError: the JSON nests deeper than ``max_depth``.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            # orjson's own limit (1024) is deeper than any configured one.
            raise ProtocolError(f"JSON nested deeper than {max_depth}") from None
        raise ParseError(f"invalid JSON: {exc}") from None
    if isinstance(value, dict | list):
        brackets = data.count(b"{" if isinstance(data, bytes) else "{")  # type: ignore[arg-type]
        brackets += data.count(b"[" if isinstance(data, bytes) else "[")  # type: ignore[arg-type]
        if brackets > max_depth and _too_deep(value, max_depth):
            raise ProtocolError(f"JSON nested deeper than {max_depth}")
    return value


def parse_message(body: bytes | str, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Message:
    """Decode and classify one JSON-RPC message.

    Raises:
        ParseError: the body is not JSON.
        ProtocolError: the JSON nests deeper than ``max_depth`` or is not a JSON-RPC
            2.0 message.
    """
    return Message.from_raw(loads_bounded(body, max_depth))


def error_response(
    request_id: RequestId | None, code: int, message: str, data: Any = None
) -> JsonObject:
    error: JsonObject = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    response: JsonObject = {"jsonrpc": "2.0", "error": error}
    if request_id is not None:
        response["id"] = request_id
    return response


def wardgate_error_response(
    request_id: RequestId | None, error: WardgateError, decision_id: str
) -> JsonObject:
    """The generic error a client sees: public message, stable code, decision id."""
    data: JsonObject = {}
    if isinstance(error.data, dict):
        # Spec-defined fields (e.g. UnsupportedProtocolVersion's supported/requested)
        # sit at the top level of ``data``, beside our own.
        data.update(error.data)
    data["decisionId"] = decision_id
    data["code"] = error.code
    return error_response(request_id, error.jsonrpc_code, error.public_message, data)
