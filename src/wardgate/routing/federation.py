"""Pure helpers for federated routes: names, cursors, ids and merged results.

A federated route exposes several upstreams behind one endpoint. Tool and prompt
names get a per-upstream prefix (``time__get_current_time``); a list's first page is
every member's first page, and its cursor carries each member's remaining cursor; ids of
server-to-client requests and SSE event ids are tagged with the upstream's index so
that answers and resumptions find their way back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from wardgate import __version__
from wardgate.errors import InvalidParams
from wardgate.wire.jsonrpc import JsonObject, RequestId

__all__ = [
    "ACKNOWLEDGED",
    "LISTEN_METHOD",
    "LIST_KEYS",
    "SUBSCRIPTION_ID",
    "decode_cursor",
    "encode_cursor",
    "expose_name",
    "merge_acknowledged",
    "merge_capabilities",
    "merge_discover",
    "merge_initialize",
    "split_name",
    "tag_event_id",
    "tag_request_id",
    "untag_event_id",
    "untag_request_id",
]

#: List methods and the key holding their items.
LIST_KEYS: dict[str, str] = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}

_ID_TAG = "wg~"


def split_name(name: str, prefixes: Sequence[str], separator: str) -> tuple[int, str] | None:
    """Find which upstream a prefixed name belongs to: ``(index, upstream's name)``.

    At most one upstream may have the empty prefix: it takes the names no prefix claims.
    """
    fallback: int | None = None
    for index, prefix in enumerate(prefixes):
        if not prefix:
            fallback = index
            continue
        head = prefix + separator
        if name.startswith(head) and len(name) > len(head):
            return index, name[len(head) :]
    if fallback is not None and name:
        return fallback, name
    return None


def expose_name(prefix: str, separator: str, name: str) -> str:
    return f"{prefix}{separator}{name}" if prefix else name


#: Longest composite cursor accepted from a client (it carries members' own cursors).
MAX_CURSOR_CHARS = 16_384


def encode_cursor(remaining: Mapping[int, str]) -> str:
    """A list cursor naming, for each member with more pages, that member's own cursor."""
    pairs = [[index, cursor] for index, cursor in sorted(remaining.items())]
    return base64.urlsafe_b64encode(orjson.dumps(pairs)).decode().rstrip("=")


def decode_cursor(value: Any, upstreams: int) -> dict[int, str]:
    """Undo :func:`encode_cursor`: member index -> that member's cursor.

    Raises:
        InvalidParams: the cursor was not made by this route.
    """
    if not isinstance(value, str):
        raise InvalidParams("cursor must be a string")
    if len(value) > MAX_CURSOR_CHARS:
        raise InvalidParams("unknown cursor")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidParams("unknown cursor") from None
    if not isinstance(raw, list) or not raw:
        raise InvalidParams("unknown cursor")
    out: dict[int, str] = {}
    for pair in raw:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or type(pair[0]) is not int
            or not 0 <= pair[0] < upstreams
            or pair[0] in out
            or not isinstance(pair[1], str)
        ):
            raise InvalidParams("unknown cursor")
        out[pair[0]] = pair[1]
    return out


def tag_request_id(index: int, request_id: RequestId) -> str:
    kind = "i" if isinstance(request_id, int) else "s"
    return f"{_ID_TAG}{index}~{kind}{request_id}"


def untag_request_id(value: Any) -> tuple[int, RequestId] | None:
    if not isinstance(value, str) or not value.startswith(_ID_TAG):
        return None
    index, sep, rest = value[len(_ID_TAG) :].partition("~")
    if not sep or not index.isdigit():
        return None
    kind, value = rest[:1], rest[1:]
    if kind == "s":
        return int(index), value
    if kind == "i":
        try:
            return int(index), int(value)
        except ValueError:
            return None
    return None


def tag_event_id(index: int, event_id: str | None) -> str | None:
    return None if event_id is None else f"{index}.{event_id}"


def untag_event_id(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    index, sep, rest = value.partition(".")
    if not sep or not index.isdigit():
        return None
    return int(index), rest


#: Capabilities a federated route knows how to route; others are not advertised.
ROUTABLE_CAPABILITIES = frozenset(
    {"tools", "prompts", "resources", "logging", "completions", "tasks", "extensions"}
)
#: Extensions (``capabilities.extensions``) a federated route routes: tasks only.
ROUTABLE_EXTENSIONS = frozenset({"io.modelcontextprotocol/tasks"})


def merge_capabilities(results: Iterable[JsonObject]) -> JsonObject:
    """The union of routable server capabilities: a feature any upstream offers is offered."""
    merged: JsonObject = {}
    for result in results:
        caps = result.get("capabilities")
        if not isinstance(caps, dict):
            continue
        for key, value in caps.items():
            if key not in ROUTABLE_CAPABILITIES:
                continue
            if key == "extensions" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k in ROUTABLE_EXTENSIONS}
            if not isinstance(value, dict):
                merged.setdefault(key, value)
                continue
            slot = merged.setdefault(key, {})
            if isinstance(slot, dict):
                for flag, on in value.items():
                    if isinstance(on, bool):
                        slot[flag] = bool(slot.get(flag)) or on
                    else:
                        slot.setdefault(flag, on)
    return merged


#: 2026 subscription streams: the method, its first notification, the id in ``_meta``.
LISTEN_METHOD = "subscriptions/listen"
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


def merge_acknowledged(acks: Iterable[JsonObject]) -> JsonObject:
    """The filter members accepted, merged: a flag any member honours, every URI honoured."""
    merged: JsonObject = {}
    uris: list[str] = []
    for ack in acks:
        params = ack.get("params")
        accepted = params.get("notifications") if isinstance(params, dict) else None
        if not isinstance(accepted, dict):
            continue
        for key, value in accepted.items():
            if key == "resourceSubscriptions":
                if isinstance(value, list):
                    uris.extend(u for u in value if isinstance(u, str) and u not in uris)
            elif value is True:
                merged[key] = True
    if uris:
        merged["resourceSubscriptions"] = uris
    return merged


def _server_info(route: str) -> JsonObject:
    return {"name": f"wardgate/{route}", "version": __version__}


def merge_initialize(results: Mapping[str, JsonObject], version: str, route: str) -> JsonObject:
    """The InitializeResult of a federated route from its members' (by prefix)."""
    merged: JsonObject = {
        "protocolVersion": version,
        "capabilities": merge_capabilities(results.values()),
        "serverInfo": _server_info(route),
    }
    notes = [
        f"[{prefix}] {r['instructions']}"
        for prefix, r in results.items()
        if isinstance(r.get("instructions"), str)
    ]
    if notes:
        merged["instructions"] = "\n".join(notes)
    return merged


def merge_discover(results: Sequence[JsonObject], route: str) -> JsonObject:
    """The DiscoverResult (2026) of a federated route: versions every member supports,
    the strictest caching, and the capabilities any member offers (change
    notifications and resource subscriptions included: the route merges the
    members' ``subscriptions/listen`` streams)."""
    supported: set[str] | None = None
    for r in results:
        versions = r.get("supportedVersions")
        if isinstance(versions, list):
            mine = {v for v in versions if isinstance(v, str)}
            supported = mine if supported is None else supported & mine
    ttls = [r["ttlMs"] for r in results if isinstance(r.get("ttlMs"), int)]
    scopes = {str(r.get("cacheScope", "private")) for r in results}
    return {
        "resultType": "complete",
        "supportedVersions": sorted(supported or ()),
        "capabilities": merge_capabilities(results),
        "ttlMs": min(ttls, default=0),
        "cacheScope": "public" if scopes == {"public"} else "private",
        "_meta": {"io.modelcontextprotocol/serverInfo": _server_info(route)},
    }
